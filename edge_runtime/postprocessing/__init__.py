"""The postprocessing stage: dequantized model outputs into the task's payload fields."""
