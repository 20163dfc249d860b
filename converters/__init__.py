"""edge-convert: the workstation half. Trained model in, verified quantized .tflite out."""
