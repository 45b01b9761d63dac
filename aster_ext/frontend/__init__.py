"""Model importers: ONNX and Aster's Scala DSL, lowered to the IR of :mod:`aster_ext.ir`."""
