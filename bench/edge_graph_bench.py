"""Edge prefix on a GPU: eager vs CUDA graph, fp32 vs fp16, channels_last; same run.

    python bench/edge_graph_bench.py     # on the GPU box (device tool)
"""

import functools

import torch

from mtl_split_core.model import load_model
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
    model, card = load_model(resolve_model_path(""))
    split = card["default_split"]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, model {card['name']}, "
          f"edge prefix up to {split} (+ bottleneck)")
    print("| input | precision | eager ms | CUDA graph ms | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|")
    for hw in ((240, 320), (480, 640)):
        for dtype in (torch.float32, torch.float16):
            net = model.to("cuda", dtype).to(memory_format=torch.channels_last).eval()
            x = torch.rand(1, 3, *hw, device="cuda", dtype=dtype).contiguous(
                memory_format=torch.channels_last)
            with torch.inference_mode():
                eager_fn = functools.partial(net.edge, split=split)
                graph = CudaGraphEdge(net, split, hw, dtype)
                ref = eager_fn(x).float()
                got = graph(x).float()
                diff = float((got - ref).abs().max() / ref.abs().max().clamp(min=1e-6))
                e, g = bench(eager_fn, x), bench(graph, x)
            name = "fp16" if dtype == torch.float16 else "fp32"
            print(f"| {hw[1]}x{hw[0]} | {name} | {e:.3f} | {g:.3f} | {e / g:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
