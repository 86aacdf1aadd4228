"""From videos to features: decoding, I3D, MediaPipe Holistic, .pose files, batch extraction."""
