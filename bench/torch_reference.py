"""PyTorch (CPU) reference timings for the same networks the TypeScript benchmarks use.

A minimal PlainConvUNet written here (conv-InstanceNorm-LeakyReLU x2 per stage, strided conv
down, transposed conv up, skip concatenation, deep-supervision heads), DC+CE-like loss replaced by
cross-entropy on every head (the cost is the network's), SGD Nesterov. Prints markdown tables.
"""
import sys
import time

import torch
from torch import nn


class Block(nn.Sequential):
    def __init__(self, cin, cout, stride):
        super().__init__(nn.Conv3d(cin, cout, 3, stride, 1), nn.InstanceNorm3d(cout, eps=1e-5, affine=True), nn.LeakyReLU(0.01, inplace=True))


class UNet(nn.Module):
    def __init__(self, features, cin=1, classes=3):
        super().__init__()
        self.enc = nn.ModuleList()
        c = cin
        for i, f in enumerate(features):
            self.enc.append(nn.Sequential(Block(c, f, 1 if i == 0 else 2), Block(f, f, 1)))
            c = f
        self.up, self.dec, self.seg = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in range(len(features) - 1, 0, -1):
            self.up.append(nn.ConvTranspose3d(features[i], features[i - 1], 2, 2))
            self.dec.append(nn.Sequential(Block(2 * features[i - 1], features[i - 1], 1), Block(features[i - 1], features[i - 1], 1)))
            self.seg.append(nn.Conv3d(features[i - 1], classes, 1))

    def forward(self, x):
        skips = []
        for e in self.enc:
            x = e(x)
            skips.append(x)
        outs = []
        for j, (u, d, s) in enumerate(zip(self.up, self.dec, self.seg)):
            x = d(torch.cat([u(x), skips[-2 - j]], 1))
            outs.append(s(x))
        return outs[::-1]


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def train_ms(features, patch, batch=2, steps=4, device=torch.device('cpu')):
    shape = tuple(patch) if isinstance(patch, (list, tuple)) else (patch, patch, patch)
    net = UNet(features).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    x = torch.randn(batch, 1, *shape, device=device)
    y = torch.randint(0, 3, (batch, *shape), device=device)
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        outs = net(x)
        loss = sum(nn.functional.cross_entropy(o, nn.functional.interpolate(y[:, None].float(), size=o.shape[2:], mode='nearest')[:, 0].long()) for o in outs)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        opt.step()
        loss.item()
        sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times[1:])[len(times[1:]) // 2]


def predict_s(features, volume, patch, device=torch.device('cpu')):
    net = UNet(features).eval().to(device)
    x = torch.randn(1, 1, *volume, device=device)
    steps = [max(1, -(-(v - patch) // (patch // 2)) + 1) for v in volume]
    pos = [[round(i * (v - patch) / max(1, n - 1)) for i in range(n)] for v, n in zip(volume, steps)]
    out = torch.zeros(1, 3, *volume, device=device)
    sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        for z in pos[0]:
            for yy in pos[1]:
                for xx in pos[2]:
                    out[:, :, z:z + patch, yy:yy + patch, xx:xx + patch] += net(x[:, :, z:z + patch, yy:yy + patch, xx:xx + patch])[0]
    sync(device)
    return time.perf_counter() - t, len(pos[0]) * len(pos[1]) * len(pos[2])


def conv_ms(cin, cout, batch, spatial, kernel, stride, same, reps, device):
    """Median ms of one Conv3d's forward, input gradient and weight gradient (no bias).

    The gradients through aten.convolution_backward, the call autograd makes (cuDNN on CUDA).
    'same' pads k // 2 (stride 1, odd kernels); 'valid' pads nothing, as the TypeScript case.
    """
    x = torch.randn(batch, cin, *spatial, device=device)
    w = torch.randn(cout, cin, *kernel, device=device) * 0.1
    pad = [k // 2 for k in kernel] if same else [0, 0, 0]
    y = nn.functional.conv3d(x, w, None, stride, pad)
    dy = torch.randn_like(y)

    def backward(mask):
        return torch.ops.aten.convolution_backward(dy, x, w, None, stride, pad, [1, 1, 1], False, [0, 0, 0], 1, mask)

    runs = {
        'forward': lambda: nn.functional.conv3d(x, w, None, stride, pad),
        'dx': lambda: backward([True, False, False]),
        'dw': lambda: backward([False, True, False]),
    }
    out = {}
    with torch.no_grad():
        for name, fn in runs.items():
            fn()
            times = []
            for _ in range(reps):
                sync(device)
                t = time.perf_counter()
                fn()
                sync(device)
                times.append((time.perf_counter() - t) * 1000)
            out[name] = sorted(times)[len(times) // 2]
    return out


if __name__ == '__main__':
    torch.manual_seed(0)
    if len(sys.argv) >= 2 and sys.argv[1] == '--gpu-bench':
        # gpu.bench.ts: one JSON line per request, CUDA where present, else CPU.
        #   --gpu-bench train F1-F2-... PZ PY PX BATCH STEPS | predict F1-... PATCH VZ VY VX
        #             | conv CIN-COUT BATCH DZ DY DX KZ KY KX SZ SY SX SAME(0|1) REPS
        import json
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        name = torch.cuda.get_device_name(0) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
        kind, feats, nums = sys.argv[2], [int(f) for f in sys.argv[3].split('-')], [int(v) for v in sys.argv[4:]]
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        if kind == 'train':
            ms = train_ms(feats, nums[0:3], nums[3], max(2, nums[4]), device)
            out = {'ms': ms}
        elif kind == 'conv':
            out = {'ms': conv_ms(feats[0], feats[1], nums[0], nums[1:4], nums[4:7], nums[7:10], nums[10] == 1, max(1, nums[11]), device)}
        else:
            s_, tiles = predict_s(feats, tuple(nums[1:4]), nums[0], device)
            out = {'seconds': s_, 'tiles': tiles}
        out.update(device=f'{device.type}: {name}', torch=torch.__version__,
                   peakBytes=torch.cuda.max_memory_allocated() if device.type == 'cuda' else None)
        print(json.dumps(out))
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == '--train':
        # One net for kernels.bench.ts: --train F1-F2-... PATCH BATCH
        feats, patch, batch = [int(f) for f in sys.argv[2].split('-')], int(sys.argv[3]), int(sys.argv[4])
        print(f'{train_ms(feats, patch, batch):.0f} {torch.get_num_threads()} {torch.__version__}')
        sys.exit(0)
    print(f'PyTorch {torch.__version__}, CPU, {torch.get_num_threads()} threads\n')
    print('| net (tiny preset: 8/16/32) | patch, batch 2 | ms / training iteration (median) |')
    print('|---|---|---|')
    for p in (16, 24, 32):
        print(f'| 3 stages | {p}³ | {train_ms([8, 16, 32], p):.0f} |')
    s, tiles = predict_s([4, 8, 16], (96, 128, 128), 64)
    print(f'\nSliding window, 3-stage 4/8/16 net, 128×128×96 volume, patch 64³, step 0.5 ({tiles} tiles), no TTA: {s:.2f} s')
    sys.stdout.flush()
