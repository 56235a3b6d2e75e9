"""Speed, FLOPs and memory benchmark of SAEViT against host peers.

The CLI is ``tools/analysis_tools/benchmark.py``; this package holds the
logic: the peer table (:mod:`.peers`), their published top-1
(:mod:`.accuracy`), timing (:mod:`.timing`), the
attention scaling scan (:mod:`.attention_scaling`), deploy variants
(:mod:`.variants`), the run (:mod:`.runner`) and the output
(:mod:`.report`). It belongs to the tools, not to the installed
``saevit_mm``: the scripts of ``tools/analysis_tools`` import it as
``benchmark_utils`` because Python puts a script's folder on ``sys.path``.
"""
from .runner import (PRESETS, BenchmarkSettings, run_benchmark,
                     settings_from_preset)

__all__ = [
    'PRESETS', 'BenchmarkSettings', 'run_benchmark', 'settings_from_preset'
]
