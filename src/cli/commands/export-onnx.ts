// `fednnunet export-onnx`: the model folder's network as an ONNX file (src/infer/onnx-export.ts).
import { writeFileSync } from 'node:fs';
import type { Command } from '../command.ts';
import { parse, UsageError } from '../args.ts';

const USAGE = 'fednnunet export-onnx --model MODEL_DIR|MODEL.zip -o model.onnx';

const command: Command = {
  summary:
    "export a model folder's network to ONNX (opset 17; runs on onnxruntime-web WebGPU/wasm)",
  async run(argv) {
    const { values } = parse(
      argv,
      {
        model: { type: 'string', short: 'm' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      false,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (!values.model || !values.output) throw new UsageError(`usage: ${USAGE}`);
    const { archFromFolder } = await import('../../model/model-folder.ts');
    const { readModelFolder } = await import('../../node/model-folder-fs.ts');
    const { buildOnnxModel, inspectOnnx } = await import('../../infer/onnx-export.ts');
    const md = await readModelFolder(values.model);
    const arch = archFromFolder(md);
    const bytes = buildOnnxModel(arch, md.weights, {
      metadata: {
        'fednnunet.configuration': md.configuration,
        'fednnunet.dataset_name': String(
          (md.plans as { dataset_name?: string }).dataset_name ?? '',
        ),
      },
    });
    writeFileSync(values.output, bytes);
    const info = inspectOnnx(bytes);
    console.log(
      `${values.output}: ${(bytes.length / 2 ** 20).toFixed(2)} MiB, opset ${info.opset}, ${arch.dims}-D, ${arch.inputChannels} → ${arch.numClasses} channels, ops ${info.opTypes.join(' ')}`,
    );
    return 0;
  },
};
export default command;
