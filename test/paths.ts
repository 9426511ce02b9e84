// Where the in-repo test data lives: real nnU-Net reference outputs (test/reference) and small
// NIfTI/DICOM fixtures (test/fixtures). Resolved from this file, so the working directory does not matter.
import { resolve } from 'node:path';

export const REFERENCE = resolve(import.meta.dirname, 'reference');
export const FIXTURES = resolve(import.meta.dirname, 'fixtures');
