"""Networks: the classifiers, the purifier and its discriminator, ONNX graphs read back into torch, and the
operations on networks that training and evaluation share."""
