"""Tiny ResidualEncoderUNet reference: random weights, one input, torch's output logits.

Builds dynamic_network_architectures' ResidualEncoderUNet (3 stages, features 4-8-16, 3-D,
InstanceNorm + LeakyReLU, conv bias, BasicBlockD encoder) with every parameter drawn from a fixed
seed, saves it as an nnU-Net results folder (plans.json, dataset.json,
fold_0/checkpoint_final.pth holding nnU-Net's checkpoint keys), and writes an input batch and the
network's logits (deep supervision off, eval mode) as .npy.

Run (Debian's python3-torch, dynamic-network-architectures d35f85c on PYTHONPATH):
    PYTHONPATH=/path/to/dynamic-network-architectures /usr/bin/python3 make_resenc_fixture.py OUT_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

out = sys.argv[1]
torch.manual_seed(20261202)
np.random.seed(20261202)

arch_kwargs = {
    "n_stages": 3,
    "features_per_stage": [4, 8, 16],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
    # anisotropic last stride: the skip's avg-pool must follow it
    "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
    "n_blocks_per_stage": [1, 2, 2],
    "n_conv_per_stage_decoder": [1, 1],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}
net = ResidualEncoderUNet(
    input_channels=1,
    num_classes=3,
    deep_supervision=False,
    **{
        **arch_kwargs,
        "conv_op": nn.Conv3d,
        "norm_op": nn.InstanceNorm3d,
        "nonlin": nn.LeakyReLU,
    },
)
# random values everywhere (norm scales around 1), so a wrongly routed tensor shows
with torch.no_grad():
    for name, p in net.named_parameters():
        v = torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.2)
        if name.endswith("norm.weight"):
            v = v + 1.0
        p.copy_(v)
net.eval()

x = torch.randn(2, 1, 8, 16, 16)
with torch.no_grad():
    y = net(x)

plans = {
    "dataset_name": "Dataset999_ResEncTiny",
    "plans_name": "nnUNetResEncUNetPlans",
    "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
    "original_median_shape_after_transp": [8, 16, 16],
    "image_reader_writer": "NibabelIOWithReorient",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        "3d_fullres": {
            "data_identifier": "nnUNetResEncUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": [8, 16, 16],
            "median_image_size_in_voxels": [8, 16, 16],
            "spacing": [1.0, 1.0, 1.0],
            "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                "arch_kwargs": arch_kwargs,
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        }
    },
    "experiment_planner_used": "nnUNetPlannerResEncM",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {
        "0": {"max": 4.0, "mean": 0.0, "median": 0.0, "min": -4.0,
              "percentile_00_5": -3.0, "percentile_99_5": 3.0, "std": 1.0}
    },
}
dataset_json = {
    "channel_names": {"0": "MR"},
    "labels": {"background": 0, "a": 1, "b": 2},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}
folder = os.path.join(out, "nnUNetTrainer__nnUNetResEncUNetPlans__3d_fullres")
os.makedirs(os.path.join(folder, "fold_0"), exist_ok=True)
with open(os.path.join(folder, "plans.json"), "w") as f:
    json.dump(plans, f, indent=4, sort_keys=False)
with open(os.path.join(folder, "dataset.json"), "w") as f:
    json.dump(dataset_json, f, indent=4, sort_keys=False)
# the key set nnUNetTrainer.save_checkpoint writes (optimizer and logging left empty)
checkpoint = {
    "network_weights": net.state_dict(),
    "optimizer_state": {},
    "grad_scaler_state": None,
    "logging": {},
    "_best_ema": None,
    "current_epoch": 0,
    "init_args": {
        "plans": plans,
        "configuration": "3d_fullres",
        "fold": 0,
        "dataset_json": dataset_json,
        "device": torch.device("cpu"),
    },
    "trainer_name": "nnUNetTrainer",
    "inference_allowed_mirroring_axes": (0, 1, 2),
}
torch.save(checkpoint, os.path.join(folder, "fold_0", "checkpoint_final.pth"))
np.save(os.path.join(out, "input.npy"), x.numpy().astype(np.float32))
np.save(os.path.join(out, "logits.npy"), y.numpy().astype(np.float32))
sd = net.state_dict()
meta = {
    "torch": torch.__version__,
    "numpy": np.__version__,
    "input_shape": list(x.shape),
    "logits_shape": list(y.shape),
    "logits_abs_max": float(y.abs().max()),
    "state_dict_keys": len(sd),
    "unique_parameters": [[k, list(p.shape)] for k, p in net.named_parameters()],
    "n_parameters": int(sum(p.numel() for p in net.parameters())),
}
with open(os.path.join(out, "fixture_meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(json.dumps({k: meta[k] for k in ("torch", "input_shape", "logits_shape", "state_dict_keys", "n_parameters")}))
