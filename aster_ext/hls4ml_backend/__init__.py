"""hls4ml backend: certified per-layer precisions for hls4ml's own arithmetic (issue 10).

Modules: :mod:`.types` (precision strings, ap_fixed raw arithmetic), :mod:`.program` (what an
hls4ml Dense/Activation chain computes, with the template facts), :mod:`.tables` (tanh/sigmoid
tables and their rigorous error), :mod:`.simulate` (bit-exact model of the C simulation),
:mod:`.certify` (sound error bound and overflow check), :mod:`.search` (per-layer type choice),
:mod:`.project` (hls4ml/qonnx calls), :mod:`.run` (the quantize/verify entry points).

Python API (what ``aster-ext quantize MODEL --backend hls4ml`` runs)::

    from aster_ext.hls4ml_backend import Hls4mlOptions, quantize_hls4ml
    res = quantize_hls4ml("net.onnx", Hls4mlOptions(error=1e-3), "out/net")
    res.config        # the hls4ml config dict (also out/net/hls4ml_config.yml/.json)
    res.hls_model     # hls4ml's compiled model (out/net/hls4ml_prj), res.hls_model.predict(x)
    res.certificate   # per-output certified bound of that model's C simulation

A CNN classifier (Conv2D/ReLU/pooling/Flatten/Dense, :mod:`.cnn`, :mod:`.cnn_project`,
:mod:`.cnn_run`) takes the regions of its classification spec; ``res.certificate.regions`` then
holds per region the logits' error interval and whether top-1 is certified kept.

hls4ml and qonnx are imported only when a project is built (``pip install 'aster_ext[hls4ml]'``).
"""

from .run import Hls4mlOptions, Hls4mlResult, quantize_hls4ml, verify_hls4ml_dir

__all__ = ["Hls4mlOptions", "Hls4mlResult", "quantize_hls4ml", "verify_hls4ml_dir"]
