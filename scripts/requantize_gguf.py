"""Re-quantise chosen tensors of a GGUF file to Q8_0, leaving everything else as it is.

    requantize_gguf.py SOURCE DEST --from Q5_0,Q6_K [--keep token_embd.weight]

The published Qwen2.5-Coder-0.5B Q4_K_M file keeps most of its matrices in Q5_0 (their rows
of 896 values do not fit the K-quants' 256-value blocks) and half of `ffn_down` in Q6_K. On
a CPU with AVX2 only, llama.cpp evaluates prompts faster with those matrices in Q8_0 (with
AVX-512 it is as fast either way; bench/README.md has both). Each weight is dequantised and
rounded again to 1/254 of its block's largest magnitude: close to lossless, since Q5_0 and
Q6_K hold fewer levels than Q8_0.

Run by scripts/fetch-models with pinned `gguf` and `numpy` (its tool environment), which
checks the result against the sha256 in scripts/models.lock: the output is a function of the
input bytes alone (same metadata in the same order, same tensor order, same alignment).
Progress goes to stderr.
"""

import argparse
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

# Keys the writer produces itself from what it is given.
WRITER_KEYS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture"}


def field_value(field):
    """A reader field as the value and types the writer takes."""
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            return field.contents(), main, sub
        return [part.tolist()[0] for part in (field.parts[i] for i in field.data)], main, sub
    return field.contents(), main, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--from", dest="from_types", required=True,
                        help="comma-separated tensor types to re-quantise (e.g. Q5_0,Q6_K)")
    parser.add_argument("--keep", default="",
                        help="comma-separated tensor names left as they are")
    args = parser.parse_args()

    from_types = {GGMLQuantizationType[name] for name in args.from_types.split(",") if name}
    keep = {name for name in args.keep.split(",") if name}

    reader = GGUFReader(args.source)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(args.dest, arch)
    alignment = reader.fields.get("general.alignment")
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())

    for name, field in reader.fields.items():
        if name in WRITER_KEYS:
            continue
        value, vtype, sub = field_value(field)
        writer.add_key_value(name, value, vtype, sub_type=sub)

    total = len(reader.tensors)
    converted = 0
    for index, tensor in enumerate(reader.tensors, 1):
        if tensor.tensor_type in from_types and tensor.name not in keep:
            weights = dequantize(tensor.data, tensor.tensor_type)
            data = quantize(weights.astype(np.float32), GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor.name, data, raw_shape=data.shape,
                              raw_dtype=GGMLQuantizationType.Q8_0)
            converted += 1
        else:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape,
                              raw_dtype=tensor.tensor_type)
        if index % 50 == 0 or index == total:
            print(f"requantize: {index}/{total} tensors read ({converted} to Q8_0)",
                  file=sys.stderr, flush=True)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"requantize: wrote {args.dest} ({converted} of {total} tensors in Q8_0)",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
