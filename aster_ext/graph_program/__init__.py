"""Fixed-point programs over the IR graph (CNNs, residual nets, classifiers): the program
(:mod:`.program`), its bit-exact simulator (:mod:`.simulate`), the sound error analysis against
the real network over a box (:mod:`.errors`), the implementations of table activations
(:mod:`.act_tables`) and per-region certification with the greedy, ILP and descent precision
searches (:mod:`.certify`, :mod:`.ilp`, :mod:`.descent`)."""
