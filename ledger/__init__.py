"""The ledger: hash-chained, Merkle-tree log of every fact, with signed checkpoints."""
