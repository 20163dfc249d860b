"""The model stage: the TFLite file, its embedded metadata and the interpreter that runs it."""
