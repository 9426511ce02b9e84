// The seeded ellipsoid phantoms live in src/ (the browser learning check uses them too).
export { ellipsoidPhantom, PHANTOM_DATASET_JSON } from '../../../src/demo/ellipsoid-phantom.ts';
