"""hls4ml backend: certified per-layer precisions for hls4ml's own arithmetic (issue 10).

Modules: :mod:`.types` (precision strings, ap_fixed raw arithmetic), :mod:`.program` (what an
hls4ml Dense/Activation chain computes, with the template facts), :mod:`.tables` (tanh/sigmoid
tables and their rigorous error), :mod:`.simulate` (bit-exact model of the C simulation),
:mod:`.certify` (sound error bound and overflow check), :mod:`.search` (per-layer type choice),
:mod:`.project` (hls4ml/qonnx calls), :mod:`.run` (the quantize/verify entry points).
"""
