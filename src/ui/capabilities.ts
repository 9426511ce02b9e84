// What the app can do with and without WebGPU. Kept as data so the page, the README and
// tests tell the same story. `status` is the truth about this version, not the plan.
export interface Capability {
  name: string;
  needsWebGPU: boolean;
  status: 'available' | 'planned';
}

export const CAPABILITIES: Capability[] = [
  { name: 'GPU self-test (tfjs conv3d forward + gradient vs CPU)', needsWebGPU: true, status: 'available' },
  { name: 'Import NIfTI / DICOM / nnU-Net raw folders into this browser', needsWebGPU: false, status: 'available' },
  { name: 'Dataset fingerprint and nnU-Net planning', needsWebGPU: false, status: 'planned' },
  { name: 'Training the 3D U-Net', needsWebGPU: true, status: 'planned' },
  { name: 'Federated rounds (FFE, FedAvg, AsymFedAvg)', needsWebGPU: true, status: 'planned' },
  { name: 'Segmenting a new scan (WebAssembly fallback without WebGPU)', needsWebGPU: false, status: 'available' },
];
