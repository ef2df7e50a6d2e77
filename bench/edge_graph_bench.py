"""Edge prefix on a GPU: eager vs CUDA graph, fp32 vs fp16, channels_last; same run.

    python bench/edge_graph_bench.py     # on the GPU box (device tool)
    python bench/edge_graph_bench.py --model runs/plain/model --model runs/aa/model
                                         # several models' edges side by side (e.g. a backbone
                                         # variant against the plain one)
"""

import argparse

import torch

from mtl_split_core.model import load_model
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.preprocess import letterbox_tensor
from mtl_split_core.runtime.cuda_graph import CudaGraphEdge
from mtl_split_core.runtime.model_files import resolve_model_path


def bench(fn, x, iters=300):
    for _ in range(20):
        fn(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(x)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=None,
                   help="model folder or name, repeatable (default: the packaged default)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    try:  # every model loads before any timing
        models = [load_model(resolve_model_path(name)) for name in args.model or [""]]
    except (ValueError, OSError) as err:  # the model loader's errors (InputError is one)
        p.error(str(err))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| model | backbone | input | precision | eager ms | CUDA graph ms | speed-up "
          "| max rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for model, card in models:
        bench_model(model, card)


def bench_model(model: MultiTaskSplitNet, card: dict) -> None:
    """One model's edge prefix (up to its default split, with the bottleneck): table rows."""
    split = card["default_split"]
    label = f"{card['name']} `{card.get('fingerprint')}` ({split})"
    input_wh = tuple(card["input_size"])
    for hw in ((240, 320), (480, 640)):  # camera images, letterboxed to the input as the edge does
        for dtype in (torch.float32, torch.float16):
            net = model.to("cuda", dtype).to(memory_format=torch.channels_last).eval()
            image = torch.randint(0, 256, (*hw, 3), device="cuda", dtype=torch.uint8)

            def eager_fn(img, net=net, dtype=dtype):
                x = letterbox_tensor(img, input_wh)[0].to(dtype).unsqueeze(0)
                return net.edge(x.contiguous(memory_format=torch.channels_last), split)

            with torch.inference_mode():
                graph = CudaGraphEdge(net, split, hw, input_wh, dtype)
                ref = eager_fn(image).float()
                got = graph(image).float()
                diff = float((got - ref).abs().max() / ref.abs().max().clamp(min=1e-6))
                e, g = bench(eager_fn, image), bench(graph, image)
            precision = "fp16" if dtype == torch.float16 else "fp32"
            print(f"| {label} | {card['backbone']} | {hw[1]}x{hw[0]} | {precision} | {e:.3f} "
                  f"| {g:.3f} | {e / g:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
