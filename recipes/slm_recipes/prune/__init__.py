"""`slm prune`'s recipe: block influence and FFN channel importance, the surgery, healing (docs/prune.md)."""
