"""The ASL seed's video augmentation, as the seed writes it (enhanced/data/augmentations.py: its
spatial and temporal transforms and ``SignLanguageAugmentation``), kept unchanged as the reference
``bench_video_augment.py`` measures signlab's against. Not used by signlab."""
# ruff: noqa
import random
from typing import List, Tuple

import cv2
import numpy as np


class RandomRotation:
    """Rotate frames by small angle."""
    
    def __init__(self, degrees: float = 10, p: float = 0.5):
        self.degrees = degrees
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """
        Args:
            frames: (T, H, W, C) numpy array
        Returns:
            rotated frames
        """
        if random.random() > self.p:
            return frames
        
        angle = random.uniform(-self.degrees, self.degrees)
        T, H, W, C = frames.shape
        center = (W // 2, H // 2)
        M = cv2.getRotationMatrix2D(center, angle, 1.0)
        
        rotated = np.stack([
            cv2.warpAffine(frames[t], M, (W, H))
            for t in range(T)
        ])
        return rotated


class RandomScale:
    """Scale frames by random factor."""
    
    def __init__(self, scale_range: Tuple[float, float] = (0.9, 1.1), p: float = 0.5):
        self.scale_range = scale_range
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        scale = random.uniform(*self.scale_range)
        T, H, W, C = frames.shape
        new_H, new_W = int(H * scale), int(W * scale)
        
        # Scale and crop/pad back to original size
        scaled = np.stack([
            cv2.resize(frames[t], (new_W, new_H))
            for t in range(T)
        ])
        
        # Crop or pad to original size
        if scale > 1:
            # Crop center
            start_h = (new_H - H) // 2
            start_w = (new_W - W) // 2
            scaled = scaled[:, start_h:start_h+H, start_w:start_w+W, :]
        else:
            # Pad
            pad_h = (H - new_H) // 2
            pad_w = (W - new_W) // 2
            padded = np.zeros((T, H, W, C), dtype=scaled.dtype)
            padded[:, pad_h:pad_h+new_H, pad_w:pad_w+new_W, :] = scaled
            scaled = padded
        
        return scaled


class ColorJitter:
    """Randomly adjust brightness, contrast, saturation."""
    
    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.1,
        p: float = 0.5
    ):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        frames = frames.astype(np.float32)
        
        # Brightness
        if self.brightness > 0:
            delta = random.uniform(-self.brightness, self.brightness)
            frames = frames + delta
        
        # Contrast
        if self.contrast > 0:
            factor = random.uniform(1 - self.contrast, 1 + self.contrast)
            mean = frames.mean()
            frames = (frames - mean) * factor + mean
        
        # Saturation (convert to HSV)
        if self.saturation > 0:
            factor = random.uniform(1 - self.saturation, 1 + self.saturation)
            for t in range(frames.shape[0]):
                hsv = cv2.cvtColor((frames[t] * 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
                hsv[:, :, 1] = np.clip(hsv[:, :, 1] * factor, 0, 255)
                frames[t] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255
        
        return np.clip(frames, 0, 1)


class GaussianNoise:
    """Add Gaussian noise to frames."""
    
    def __init__(self, std: float = 0.05, p: float = 0.3):
        self.std = std
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        noise = np.random.normal(0, self.std, frames.shape).astype(np.float32)
        return np.clip(frames + noise, 0, 1)


class GaussianBlur:
    """Apply Gaussian blur to frames."""
    
    def __init__(self, kernel_size: int = 5, p: float = 0.3):
        self.kernel_size = kernel_size
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        return np.stack([
            cv2.GaussianBlur(frames[t], (self.kernel_size, self.kernel_size), 0)
            for t in range(frames.shape[0])
        ])


# ============================================================================
# TEMPORAL AUGMENTATIONS (Critical for sign language!)
# ============================================================================

class TemporalCrop:
    """Randomly crop a temporal segment."""
    
    def __init__(self, min_ratio: float = 0.8, p: float = 0.5):
        self.min_ratio = min_ratio
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        T = frames.shape[0]
        new_T = int(T * random.uniform(self.min_ratio, 1.0))
        start = random.randint(0, T - new_T)
        
        return frames[start:start+new_T]


class SpeedPerturbation:
    """Change playback speed by resampling frames."""
    
    def __init__(self, rates: List[float] = [0.9, 1.0, 1.1], p: float = 0.5):
        self.rates = rates
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        rate = random.choice(self.rates)
        T = frames.shape[0]
        new_T = int(T / rate)
        
        if new_T == T:
            return frames
        
        # Resample using linear interpolation
        indices = np.linspace(0, T - 1, new_T).astype(np.float32)
        new_frames = []
        
        for idx in indices:
            low = int(idx)
            high = min(low + 1, T - 1)
            alpha = idx - low
            
            frame = (1 - alpha) * frames[low] + alpha * frames[high]
            new_frames.append(frame)
        
        return np.stack(new_frames)


class TemporalJitter:
    """Randomly drop or duplicate frames."""
    
    def __init__(self, drop_prob: float = 0.1, dup_prob: float = 0.1, p: float = 0.5):
        self.drop_prob = drop_prob
        self.dup_prob = dup_prob
        self.p = p
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if random.random() > self.p:
            return frames
        
        new_frames = []
        for t in range(frames.shape[0]):
            if random.random() < self.drop_prob:
                continue  # Drop frame
            
            new_frames.append(frames[t])
            
            if random.random() < self.dup_prob:
                new_frames.append(frames[t])  # Duplicate frame
        
        if len(new_frames) == 0:
            return frames  # Don't drop all frames
        
        return np.stack(new_frames)



class SignLanguageAugmentation:
    """
    Complete augmentation pipeline for sign language video data.
    
    Usage:
        augmenter = SignLanguageAugmentation(mode='train')
        augmented_frames = augmenter(frames)
    """
    
    def __init__(self, mode: str = 'train', intensity: str = 'medium'):
        """
        Args:
            mode: 'train', 'val', or 'test'
            intensity: 'light', 'medium', or 'heavy'
        """
        self.mode = mode
        self.intensity = intensity
        self.transforms = self._build_transforms()
    
    def _build_transforms(self) -> List:
        if self.mode != 'train':
            return []  # No augmentation for val/test
        
        if self.intensity == 'light':
            return [
                ColorJitter(brightness=0.1, contrast=0.1, p=0.3),
                GaussianNoise(std=0.02, p=0.2),
            ]
        
        elif self.intensity == 'medium':
            return [
                # Spatial
                RandomRotation(degrees=10, p=0.5),
                RandomScale(scale_range=(0.95, 1.05), p=0.3),
                ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, p=0.5),
                GaussianNoise(std=0.03, p=0.3),
                
                # Temporal (most important!)
                SpeedPerturbation(rates=[0.9, 0.95, 1.0, 1.05, 1.1], p=0.5),
                TemporalCrop(min_ratio=0.85, p=0.3),
                TemporalJitter(drop_prob=0.05, dup_prob=0.05, p=0.3),
            ]
        
        else:  # heavy
            return [
                # Spatial
                RandomRotation(degrees=15, p=0.6),
                RandomScale(scale_range=(0.9, 1.1), p=0.5),
                ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2, p=0.6),
                GaussianNoise(std=0.05, p=0.4),
                GaussianBlur(kernel_size=3, p=0.2),
                SpatialMask(num_masks=1, max_size=0.15, p=0.3),
                
                # Temporal
                SpeedPerturbation(rates=[0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15], p=0.6),
                TemporalCrop(min_ratio=0.8, p=0.4),
                TemporalJitter(drop_prob=0.08, dup_prob=0.08, p=0.4),
                TemporalMask(num_masks=1, max_mask_len=5, p=0.2),
            ]
    
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """
        Apply augmentations to frames.
        
        Args:
            frames: (T, H, W, C) numpy array, values in [0, 1]
            
        Returns:
            augmented frames
        """
        for transform in self.transforms:
            frames = transform(frames)
        
        return frames


