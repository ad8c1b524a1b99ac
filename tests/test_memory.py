"""core.memory: freed heap memory goes back to the OS (glibc), so one stage's garbage does not add to the next's peak."""
import numpy as np
import pytest

from core import memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(memory._TRIM is None, reason="the C library has no malloc_trim (not glibc)")
def test_release_free_memory_returns_freed_heap_to_the_os():
    # 2,000 blocks of 100 KiB: below glibc's 128 KiB mmap threshold, so they come from the heap; the last
    # one stays alive, so glibc cannot shrink the heap from its top by itself
    blocks = [np.ones(100 * 1024, dtype=np.uint8) for _ in range(2000)]
    last = blocks.pop()
    del blocks
    held = _rss_mib()
    memory.release_free_memory()
    assert held - _rss_mib() > 150  # of the ~195 MiB freed
    assert last.sum() == 100 * 1024


def _convs_run(loaded, fn) -> tuple[int, object]:
    """How many times the first backbone stage's first conv runs during fn(), and fn's result."""
    import torch
    from core.models import backbone
    conv = next(m for m in backbone.stages(loaded.model)[0][1].modules() if isinstance(m, torch.nn.Conv2d))
    calls = []
    handle = conv.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = fn()
    finally:
        handle.remove()
    return len(calls), result


def test_compare_saves_memory_by_recomputing_igs_first_stages_with_the_same_map(tiny, rgb_image):
    from core.methods.integrated_gradients import compute_ig
    x = tiny.pixel_values(rgb_image)
    params = {"baseline": "black", "steps": 4, "internal_batch_size": 4}
    plain_runs, plain = _convs_run(tiny, lambda: compute_ig(tiny, x, 1, params)["ig"].heatmap)
    with memory.saving_memory():
        saved_runs, saved = _convs_run(tiny, lambda: compute_ig(tiny, x, 1, params)["ig"].heatmap)
    # two no-grad forwards (the class; F(x) and F(baseline) in one batch) and the path's one forward (4
    # points in one chunk), which with recomputation runs again in the backward
    assert (plain_runs, saved_runs) == (3, 4)
    np.testing.assert_array_equal(saved, plain)
    assert not memory.saving() and all("forward" not in vars(m) for m in tiny.model.modules())


def test_recomputed_modules_run_as_usual_on_other_threads(tiny, rgb_image):
    import threading
    import torch
    from core.models import backbone
    stage = backbone.stages(tiny.model)[0][1]
    x = tiny.pixel_values(rgb_image).requires_grad_(True)
    runs = {}
    with memory.recomputed([stage]):
        def other():
            runs["other"] = _convs_run(tiny, lambda: torch.autograd.grad(tiny.model(pixel_values=x).logits.sum(), x))[0]
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        runs["here"] = _convs_run(tiny, lambda: torch.autograd.grad(tiny.model(pixel_values=x).logits.sum(), x))[0]
    assert runs == {"other": 1, "here": 2}


def test_a_comparison_computes_its_maps_saving_memory(tiny, rgb_image, monkeypatch):
    from core.evaluation.compare import compare
    from core.methods.registry import METHODS
    x, seen, thresholds = tiny.pixel_values(rgb_image), [], []
    monkeypatch.setattr(memory, "_MALLOPT", lambda param, value: thresholds.append((param, value)))

    def explain(name, params, progress):
        seen.append((memory.saving(), thresholds[-1][1]))
        return METHODS[name].compute(tiny, x, 1, params, progress)[name]
    compare(tiny, x, 1, {"attention": {}, "ig": {"baseline": "black", "steps": 2}}, steps=2, explain=explain)
    assert seen == [(True, memory.MAPPED_FROM)] * 2 and not memory.saving()
    assert thresholds == [(memory._M_MMAP_THRESHOLD, memory.MAPPED_FROM),
                          (memory._M_MMAP_THRESHOLD, memory.HEAP_BLOCKS_UP_TO)]  # set for the maps, then back


_MAPPED_BLOCKS = """
import json, numpy as np
from core import memory

def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

def freed_mib():
    # RSS given back when 150 blocks of 2 MiB are freed; the batch's last block stays alive, so glibc
    # cannot shrink its heap from the top
    blocks = [np.ones(2 << 20, dtype=np.uint8) for _ in range(150)]
    last = blocks.pop()
    held = rss_mib()
    del blocks
    given = held - rss_mib()
    assert last.sum() == 2 << 20
    return given

memory._MALLOPT(memory._M_MMAP_THRESHOLD, memory.HEAP_BLOCKS_UP_TO)  # where a busy process settles
before = freed_mib()
memory.release_free_memory()
with memory.mapped_blocks(1 << 20):
    within = freed_mib()
print(json.dumps([before, within, freed_mib()]))
"""


@pytest.mark.skipif(memory._MALLOPT is None, reason="the C library has no mallopt (not glibc)")
def test_mapped_blocks_give_large_freed_blocks_back_at_once_and_the_heap_keeps_them_after():
    # in a fresh process: free heap chunks left by other tests would be reused before any new mapping
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _MAPPED_BLOCKS], capture_output=True, text=True, check=True)
    before, within, after = json.loads(out.stdout)
    assert before < 50  # of 298 MiB: 2 MiB blocks come from the heap, which keeps them
    assert within > 250  # each block had pages of its own
    assert after < 50  # the threshold is back at 32 MiB
