// `npm run bench gpu -- --pack DIR`: one folder that runs `npm run bench gpu` on a machine with no
// Node and no network (e.g. a lent GPU machine with only Python + PyTorch): the benchmark bundled
// into one ES module (esbuild), Dawn's dawn.node (the `webgpu` package), this Node binary, the
// Vulkan loader Debian's Chromium ships (a GPU machine often has the driver's ICD but no loader)
// and libglvnd's dispatch libraries (NVIDIA's Vulkan driver links them),
// the 801 plan and the PyTorch script. Binaries are xz-compressed (the folder stays ≤ 60 MiB);
// run.sh unpacks them with Python's lzma, so xz need not exist there.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const out = resolve(process.argv[2] || '');
if (!process.argv[2]) {
  console.error('usage: npm run bench gpu -- --pack DIR');
  process.exit(2);
}
if (existsSync(out) && readdirSync(out).length) {
  console.error(`${out} exists and is not empty`);
  process.exit(2);
}
const platform = `${process.platform}-${process.arch}`;
const dawn = join('node_modules/webgpu/dist', platform, 'dawn.node');
if (!existsSync(dawn)) {
  console.error(`no Dawn build for ${platform} at ${dawn} (npm ci installs the 'webgpu' package)`);
  process.exit(1);
}
mkdirSync(join(out, 'node_modules/webgpu/dist', platform), { recursive: true });
mkdirSync(join(out, 'vulkan'), { recursive: true });

await build({
  entryPoints: ['bench/gpu.bench.ts'],
  outfile: join(out, 'gpu-bench.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // dawn.node is loaded by the webgpu package's own index.js, beside the bundle.
  external: ['webgpu'],
  // Bundled CommonJS (tfjs' dependencies) calls require(): give the ES module one.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
for (const f of ['index.js', 'package.json', 'LICENSE.md'])
  copyFileSync(join('node_modules/webgpu', f), join(out, 'node_modules/webgpu', f));
copyFileSync(
  'test/reference/plans/Dataset801_PhantomMR/nnUNetPlans.json',
  join(out, 'plan801.json'),
);
copyFileSync('bench/torch_reference.py', join(out, 'torch_reference.py'));

const xz = (src, dst) =>
  writeFileSync(dst, execFileSync('xz', ['-c', '-6', '-T0', src], { maxBuffer: 1 << 30 }));
xz(dawn, join(out, 'node_modules/webgpu/dist', platform, 'dawn.node.xz'));
xz(process.execPath, join(out, 'node.xz'));
const loader = '/usr/lib/chromium/libvulkan.so.1';
if (existsSync(loader)) copyFileSync(loader, join(out, 'vulkan/libvulkan.so.1'));
else
  console.warn(
    `note: ${loader} missing (install Debian chromium); the target must have its own Vulkan loader`,
  );
// NVIDIA's Vulkan driver library (libGLX_nvidia) links against libglvnd's dispatch libraries,
// which a compute-only GPU container may lack; carried too, used only where the system has none.
mkdirSync(join(out, 'glvnd'), { recursive: true });
for (const lib of ['libGLdispatch.so.0', 'libGLX.so.0']) {
  const src = join(`/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, lib);
  // copyFileSync follows the symlink: the real library lands under its soname.
  if (existsSync(src)) copyFileSync(src, join(out, 'glvnd', lib));
  else console.warn(`note: ${src} missing (Debian libglvnd0/libglx0); not carried`);
}

writeFileSync(
  join(out, 'run.sh'),
  `#!/bin/sh
# The WebGPU training/inference benchmark of FednnU-Net Web, packed: sh run.sh [--quick]
# Needs python3 (to unpack; with torch for the PyTorch columns) and a Vulkan driver (ICD) for the
# GPU. A Vulkan loader is carried in vulkan/ and used when the system has none.
set -e
cd "$(dirname "$0")"
unxz() { python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$1" "$2"; }
[ -x node ] || { unxz node.xz node; chmod +x node; }
d=node_modules/webgpu/dist/${platform}
[ -f $d/dawn.node ] || unxz $d/dawn.node.xz $d/dawn.node
# Carried libraries only where the system has none (LD_LIBRARY_PATH would win over its own).
has() { { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q "$1"; }
has libvulkan.so.1 || export LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$PWD/vulkan"
has libGLdispatch.so.0 || export LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$PWD/glvnd"
# GPU containers often mount the driver's manifest outside the loader's search path.
if [ -z "\${VK_ICD_FILENAMES:-}\${VK_DRIVER_FILES:-}" ] && [ -z "$(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null)" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/*.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f"; break; fi
  done
fi
echo "vulkan ICDs: $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\\n' ' ')\${VK_DRIVER_FILES:+ (using $VK_DRIVER_FILES)}"
echo "LD_LIBRARY_PATH=\${LD_LIBRARY_PATH:-}"
exec ./node --expose-gc --max-old-space-size=16384 gpu-bench.mjs "$@"
`,
  { mode: 0o755 },
);
writeFileSync(
  join(out, 'README.txt'),
  `FednnU-Net Web GPU benchmark (packed ${new Date().toISOString().slice(0, 10)} for ${platform}).
Run: sh run.sh            (full sizes: nnU-Net's 801 3d_fullres plan at its patch)
     sh run.sh --quick    (small sizes, minutes on a CPU adapter)
Prints "train step <name>: webgpu X ms, pytorch Y ms (<device>), ratio R" per size.
`,
);
const total = (dir) =>
  readdirSync(dir).reduce((a, f) => {
    const p = join(dir, f);
    return a + (statSync(p).isDirectory() ? total(p) : statSync(p).size);
  }, 0);
console.log(
  `packed ${out}: ${(total(out) / 2 ** 20).toFixed(1)} MiB; run it with: sh ${out}/run.sh [--quick]`,
);
