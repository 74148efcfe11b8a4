"""Weight quantization of Hugging Face models on torch alone (issue 11): GPTQ (Frantar et al. 2022),
round-to-nearest on the same grid, and the shared pieces AWQ builds on (calibration windows, the sequential block
driver, the grid, the checkpoint writer). The recipe entry is recipes/quantize_hf.py; docs/quantize-recipes.md
describes its config, events and result."""
