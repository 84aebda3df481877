"""The front end: networks as users have them (ONNX float or int8, NumPy arrays), read into
the float `Network` description, with training for the demos and fine-tuning."""
