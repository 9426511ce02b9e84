// Where the team's shared reference data and fixtures live: `../shared` beside the checkout
// (CI lays a copy there too). FEDNNUNET_SHARED overrides it.
import { resolve } from 'node:path';

export const SHARED = process.env.FEDNNUNET_SHARED ?? resolve(process.cwd(), '..', 'shared');
export const REFERENCE = resolve(SHARED, 'reference');
export const SHARED_FIXTURES = resolve(SHARED, 'fixtures');
