// The network both prediction benchmarks (Node and browser) time: 3 stages, 4/8/16 features, patch 64³.
export const patch = [64, 64, 64];
export const strides = [
  [1, 1, 1],
  [2, 2, 2],
  [2, 2, 2],
];
export const architecture = {
  network_class_name: 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
  arch_kwargs: {
    n_stages: 3,
    features_per_stage: [4, 8, 16],
    conv_op: 'torch.nn.modules.conv.Conv3d',
    kernel_sizes: [
      [3, 3, 3],
      [3, 3, 3],
      [3, 3, 3],
    ],
    strides,
    n_conv_per_stage: [2, 2, 2],
    n_conv_per_stage_decoder: [2, 2],
    conv_bias: true,
    norm_op: 'torch.nn.modules.instancenorm.InstanceNorm3d',
    norm_op_kwargs: { eps: 1e-5, affine: true },
    dropout_op: null,
    nonlin: 'torch.nn.LeakyReLU',
    nonlin_kwargs: { inplace: true },
  },
};
