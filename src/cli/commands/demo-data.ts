// `fednnunet demo-data -o DIR --sites N`: synthetic multi-site nnU-Net raw datasets.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';
import { DEMO_SITES, demoDataset } from '../../demo/phantoms.ts';
import { writeNifti } from '../../io/nifti-write.ts';

const command: Command = {
  summary: 'write synthetic multi-site phantom datasets (nnU-Net raw folders) for demos and tests',
  async run(argv) {
    const { values } = parse(
      argv,
      {
        out: { type: 'string', short: 'o' },
        sites: { type: 'string', default: '3' },
        cases: { type: 'string' },
        help: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      console.log('fednnunet demo-data -o DIR [--sites 1-3] [--cases N]');
      return 0;
    }
    if (!values.out) throw new UsageError('-o DIR is required');
    const sites = Number(values.sites);
    if (!Number.isInteger(sites) || sites < 1 || sites > DEMO_SITES.length)
      throw new UsageError(`--sites must be 1..${DEMO_SITES.length}`);
    const cases = values.cases === undefined ? undefined : Number(values.cases);
    if (cases !== undefined && (!Number.isInteger(cases) || cases < 2))
      throw new UsageError('--cases must be an integer ≥ 2');
    for (let s = 0; s < sites; s++) {
      const ds = demoDataset(DEMO_SITES[s], s, cases);
      const root = join(values.out, ds.name);
      mkdirSync(join(root, 'imagesTr'), { recursive: true });
      mkdirSync(join(root, 'labelsTr'), { recursive: true });
      writeFileSync(join(root, 'dataset.json'), JSON.stringify(ds.datasetJson, null, 4));
      for (const c of ds.cases) {
        writeFileSync(
          join(root, 'imagesTr', `${c.id}_0000.nii.gz`),
          writeNifti(c.image, { gzip: true }),
        );
        writeFileSync(
          join(root, 'labelsTr', `${c.id}.nii.gz`),
          writeNifti(c.label, { gzip: true }),
        );
      }
      console.log(
        `${root}: ${ds.cases.length} cases, ${ds.cases[0].image.dims.join('×')} voxels at ${DEMO_SITES[s].spacing.join('×')} mm`,
      );
    }
    return 0;
  },
};
export default command;
