"""Device time of a PyTorch callable on the GPU: the median of CUDA-event timings after a few warm-up runs."""


def median_ms(fn, reps=50, warmup=5):
    import torch  # here, so that modules importing this one load where PyTorch is not installed

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]
