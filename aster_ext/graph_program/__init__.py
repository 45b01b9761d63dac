"""Fixed-point programs over the IR graph (CNNs, residual nets, classifiers): the program
(:mod:`.program`), its bit-exact simulator (:mod:`.simulate`), the sound error analysis against
the real network over a box (:mod:`.errors`) and per-region certification with a greedy
per-layer precision search (:mod:`.certify`)."""
