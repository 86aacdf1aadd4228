"""A synthetic signer: 540-dim holistic pose sequences for gloss sentences.

Each gloss is a motion of the hands relative to the body: a path through signing space (from a
place of articulation: forehead, chin, chest, neutral space...), a handshape, a hand
orientation, and one or two hands. Signers differ in body proportions, signing-space habits,
speed, and where they stand and how far from the camera. Signs blend into each other through
movement epenthesis (co-articulation); landmarks jitter, and hands are missed for a few frames
now and then, as MediaPipe misses them. Everything is drawn from seeded generators, so a corpus
is a pure function of its :class:`CorpusSpec`.

Coordinates are built in body units (origin between the shoulders, unit = shoulder width,
y down, z towards the camera negative), then placed in the image like MediaPipe's output.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from signlab import pose
from signlab.data.grammar import Grammar, Sentence
from signlab.kinds import HOLISTIC

# ----------------------------------------------------------------------------- hands

# Per-finger curl (thumb, index, middle, ring, pinky; 0 = straight, 1 = fist) and spread.
HANDSHAPES = {
    "B": ([0.6, 0.0, 0.0, 0.0, 0.0], 0.0),
    "5": ([0.0, 0.0, 0.0, 0.0, 0.0], 1.0),
    "A": ([0.1, 1.0, 1.0, 1.0, 1.0], 0.0),
    "S": ([0.8, 1.0, 1.0, 1.0, 1.0], 0.0),
    "1": ([0.8, 0.0, 1.0, 1.0, 1.0], 0.0),
    "V": ([0.8, 0.0, 0.0, 1.0, 1.0], 0.8),
    "Y": ([0.0, 1.0, 1.0, 1.0, 0.0], 0.6),
    "C": ([0.3, 0.45, 0.45, 0.45, 0.45], 0.2),
    "O": ([0.5, 0.65, 0.65, 0.65, 0.65], 0.0),
    "L": ([0.0, 0.0, 1.0, 1.0, 1.0], 0.5),
    "W": ([0.8, 0.0, 0.0, 0.0, 1.0], 0.7),
    "I": ([0.8, 1.0, 1.0, 1.0, 0.0], 0.0),
}
_FINGER_BASE_X = np.array([0.09, 0.03, -0.03, -0.09])  # index..pinky knuckles across the palm
_FINGER_LENGTH = np.array([0.95, 1.0, 0.95, 0.8])[:, None] * np.array([0.22, 0.14, 0.11])  # (4, 3)
_FLEX = np.radians([75.0, 95.0, 65.0])  # joint flexion at curl 1
_THUMB_LENGTH = np.array([0.14, 0.12, 0.1, 0.09])


def hand_landmarks(curls: np.ndarray, spread: np.ndarray, roll: np.ndarray, yaw: np.ndarray, mirror: bool) -> np.ndarray:
    """(T, 5) curls, (T,) spread / roll / yaw -> (T, 21, 3) points relative to the wrist.

    Unit = hand length. A right hand with roll 0 points its fingers up (-y), palm to camera.
    """
    t = len(curls)
    out = np.zeros((t, 21, 3))
    # fingers 2..5: three segments each, flexing towards the palm (+z) around the x axis
    angles = np.cumsum(curls[:, 1:, None] * _FLEX, axis=2)  # (T, 4, 3)
    fan = np.radians([-12, -4, 4, 12])[None, :, None] * spread[:, None, None]  # splay around z
    seg = np.stack([np.sin(fan) * np.cos(angles), -np.cos(fan) * np.cos(angles), np.sin(angles)], axis=-1)
    joints = np.cumsum(seg * _FINGER_LENGTH[None, :, :, None], axis=2)  # (T, 4, 3, 3)
    base = np.stack([np.broadcast_to(_FINGER_BASE_X, (t, 4)), np.full((t, 4), -0.45), np.zeros((t, 4))], axis=-1)
    out[:, 5:] = np.concatenate([base[:, :, None], base[:, :, None] + joints], axis=2).reshape(t, 16, 3)
    # thumb: four points sweeping from the side of the palm across it as it curls
    sweep = np.radians(35 + 70 * curls[:, 0])[:, None]
    steps = np.cumsum(np.broadcast_to(_THUMB_LENGTH, (t, 4)), axis=1)
    out[:, 1:5] = np.stack([0.08 + steps * np.sin(sweep) * 0.9, -0.08 - steps * np.cos(sweep), steps * curls[:, :1] * 0.5], -1)
    if mirror:  # the left hand
        out[..., 0] *= -1
    cy, sy = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x, z = out[..., 0] * cy + out[..., 2] * sy, -out[..., 0] * sy + out[..., 2] * cy
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    y = out[..., 1]
    return np.stack([x * cr - y * sr, x * sr + y * cr, z], axis=-1)


# ----------------------------------------------------------------------------- lexicon

PLACES = {  # wrist positions in body units
    "forehead": (-0.15, -0.85, -0.35),
    "chin": (-0.1, -0.45, -0.45),
    "cheek": (-0.4, -0.6, -0.3),
    "chest": (-0.1, 0.45, -0.45),
    "neutral": (-0.3, 0.3, -0.8),
    "side": (-0.75, 0.25, -0.45),
    "shoulder": (0.35, 0.1, -0.4),
    "low": (-0.25, 0.85, -0.6),
}
REST = np.array([-0.55, 1.55, -0.1])  # hands hanging beside the hips


@dataclass
class Sign:
    """How one gloss is signed (in body units; dominant hand = the signer's right)."""

    start: np.ndarray  # (3,) wrist at the start
    via: np.ndarray  # (3,) Bezier control point
    end: np.ndarray  # (3,) wrist at the end
    repeats: int  # back-and-forth oscillations on top of the path
    shape: str
    end_shape: str
    roll: tuple[float, float]
    yaw: float
    hands: str  # "one", "mirror" (both hands, symmetric), "base" (left hand static)
    base_shape: str
    duration: float  # relative to the signer's mean sign duration


def make_lexicon(glosses: list[str], seed: int) -> dict[str, Sign]:
    """Random but fixed sign parameters for each gloss (a function of the gloss list and seed).

    Like real lexicons, signs come in families that share place and movement and differ only in
    handshape or orientation (minimal pairs), so the hands' detail matters.
    """
    rng = np.random.default_rng([seed, 7])
    places, shapes = list(PLACES), list(HANDSHAPES)
    lexicon: dict[str, Sign] = {}
    family: Sign | None = None
    members = 0
    for gloss in glosses:
        shape = shapes[rng.integers(len(shapes))]
        if family is not None and members < 3 and rng.random() < 0.45:  # a minimal pair of the last sign
            members += 1
            lexicon[gloss] = Sign(family.start, family.via, family.end, family.repeats, shape,
                                  shape if family.end_shape == family.shape else shapes[rng.integers(len(shapes))],
                                  (family.roll[0] + rng.choice([0.0, 0.8]), family.roll[1]), family.yaw,
                                  family.hands, family.base_shape, family.duration)
            continue
        start = np.array(PLACES[places[rng.integers(len(places))]]) + rng.normal(0, 0.12, 3)
        move = rng.normal(0, 1, 3)
        move *= rng.uniform(0.25, 0.7) / np.linalg.norm(move)
        bend = rng.normal(0, 0.25, 3) * (rng.random() < 0.5)
        family = lexicon[gloss] = Sign(
            start=start,
            via=start + move / 2 + bend,
            end=start + move,
            repeats=int(rng.choice([0, 0, 0, 1, 2])),
            shape=shape,
            end_shape=shape if rng.random() < 0.7 else shapes[rng.integers(len(shapes))],
            roll=(float(rng.uniform(-1.2, 0.8)), float(rng.uniform(-1.2, 0.8))),
            yaw=float(rng.choice([0.0, 0.0, 0.9, 1.4])),
            hands=str(rng.choice(["one", "one", "mirror", "base"])),
            base_shape=shapes[rng.integers(len(shapes))],
            duration=float(rng.uniform(0.8, 1.3)),
        )
        members = 1
    return lexicon


# ----------------------------------------------------------------------------- signers


@dataclass
class Signer:
    """Body, habits and camera set-up of one synthetic signer."""

    width: float  # shoulder width in image units (camera distance)
    centre: tuple[float, float]  # image position of the shoulders' midpoint
    camera_roll: float
    upper_arm: float
    forearm: float
    hand: float
    head: float
    neck: float
    torso: float
    space_scale: float  # how large this signer signs
    space_shift: tuple[float, float, float]
    laxness: float  # how loosely handshapes are formed (curls pulled towards half-open)
    frames_per_sign: float  # speed
    noise: float  # landmark jitter, image units
    miss_rate: float  # chance per frame that a hand detection drop-out starts
    accent: float = 0.0  # how far (body units) this signer's own form of each sign strays from the lexicon's
    accent_seed: int = 0


def sample_signer(rng: np.random.Generator, variation: float = 1.0) -> Signer:
    """A signer drawn from ``rng``; ``variation`` scales how far each trait strays from the typical
    signer (1: the demo's spread; draws are the same, so 1 reproduces the corpora made before)."""

    def trait(lo: float, hi: float, floor: float = -np.inf) -> float:
        value, mid = rng.uniform(lo, hi), (lo + hi) / 2
        return value if variation == 1 else max(floor, mid + (value - mid) * variation)

    return Signer(
        width=trait(0.17, 0.3),
        centre=(trait(0.38, 0.62), trait(0.36, 0.5)),
        camera_roll=trait(-0.05, 0.05),
        upper_arm=0.78 * trait(0.9, 1.1),
        forearm=0.7 * trait(0.9, 1.1),
        hand=0.45 * trait(0.88, 1.12),
        head=trait(0.9, 1.1),
        neck=0.72 * trait(0.9, 1.1),
        torso=1.9 * trait(0.9, 1.1),
        space_scale=trait(0.85, 1.15),
        space_shift=tuple(rng.normal(0, 0.08 * variation, 3)),
        laxness=trait(0.0, 0.3, floor=0.0),
        frames_per_sign=trait(10.0, 17.0, floor=5.0),
        noise=trait(0.002, 0.006, floor=0.001),
        miss_rate=trait(0.01, 0.04, floor=0.0),
        accent=0.06 * max(0.0, variation - 1),
        accent_seed=int(rng.integers(2**31)) if variation > 1 else 0,
    )


# ----------------------------------------------------------------------------- rendering


def _smooth(u: np.ndarray) -> np.ndarray:
    return u * u * (3 - 2 * u)


def _elbows(shoulder: np.ndarray, wrist: np.ndarray, l1: float, l2: float, pole: np.ndarray) -> np.ndarray:
    """Two-bone inverse kinematics, vectorised over frames: elbow bent towards ``pole``."""
    sw = wrist - shoulder
    d = np.clip(np.linalg.norm(sw, axis=-1, keepdims=True), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3)
    u = sw / np.maximum(np.linalg.norm(sw, axis=-1, keepdims=True), 1e-6)
    a = (l1**2 - l2**2 + d**2) / (2 * d)
    h = np.sqrt(np.maximum(l1**2 - a**2, 0))
    perp = pole - (pole * u).sum(-1, keepdims=True) * u
    perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-6)
    return shoulder + a * u + h * perp


@dataclass
class _Track:
    """Per-frame state of one hand."""

    wrist: list
    curls: list
    spread: list
    roll: list
    yaw: list

    def add(self, wrist, curls, spread, roll, yaw) -> None:
        for name, value in zip(("wrist", "curls", "spread", "roll", "yaw"), (wrist, curls, spread, roll, yaw)):
            getattr(self, name).append(value)

    def last(self):
        return self.wrist[-1][-1], self.curls[-1][-1], self.spread[-1][-1], self.roll[-1][-1], self.yaw[-1][-1]

    def stacked(self):
        return [np.concatenate(getattr(self, n)) for n in ("wrist", "curls", "spread", "roll", "yaw")]


def _shape(name: str, laxness: float = 0.0) -> tuple[np.ndarray, float]:
    curls, spread = HANDSHAPES[name]
    return (1 - laxness) * np.array(curls, float) + laxness * 0.5, float(spread) * (1 - laxness)


class SyntheticSigner:
    """Renders gloss sentences as (T, 540) float32 pose features for one signer."""

    def __init__(self, lexicon: dict[str, Sign], signer: Signer):
        self.lexicon, self.s = lexicon, signer
        # the signer's own form of each sign: start, via and end moved the same way every time
        rng = np.random.default_rng(signer.accent_seed)
        self.accent = {g: rng.normal(0, signer.accent, (3, 3)) if signer.accent else 0.0 for g in lexicon}

    def _place(self, p: np.ndarray) -> np.ndarray:
        return p * self.s.space_scale + np.array(self.s.space_shift)

    def _segments(self, glosses: tuple[str, ...], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        s = self.s
        rest_r, rest_l = REST, REST * np.array([-1, 1, 1])
        open_hand, _ = _shape("B")
        right, left = _Track([], [], [], [], []), _Track([], [], [], [], [])
        lead = int(rng.integers(4, 10))
        for hand, rest in ((right, rest_r), (left, rest_l)):
            hand.add(np.repeat(rest[None], lead, 0), np.repeat(open_hand[None] * 0.3, lead, 0), np.zeros(lead),
                     np.zeros(lead), np.zeros(lead))

        def move_to(hand: _Track, wrist, curls, spread, roll, yaw, n: int) -> None:
            w0, c0, s0, r0, y0 = hand.last()
            u = _smooth(np.linspace(0, 1, n + 2)[1:-1])[:, None]
            hand.add(w0 + u * (wrist - w0), c0 + u * (curls - c0), s0 + u[:, 0] * (spread - s0),
                      r0 + u[:, 0] * (roll - r0), y0 + u[:, 0] * (yaw - y0))

        for gloss in glosses:
            sign = self.lexicon[gloss]
            n = max(4, int(round(s.frames_per_sign * sign.duration * rng.uniform(0.85, 1.15))))
            gap = max(2, int(round(s.frames_per_sign * 0.35 * rng.uniform(0.7, 1.3))))
            jitter = rng.normal(0, 0.07, (3, 3)) + self.accent[gloss]  # no two instances are the same
            p0, p1, p2 = (self._place(p) + j for p, j in zip((sign.start, sign.via, sign.end), jitter))
            u = _smooth(np.linspace(0, 1, n))[:, None]
            path = (1 - u) ** 2 * p0 + 2 * u * (1 - u) * p1 + u**2 * p2
            if sign.repeats:
                path += np.sin(np.linspace(0, 2 * np.pi * sign.repeats, n))[:, None] * (p2 - p0) * 0.25
            c_start, sp_start = _shape(sign.shape, s.laxness)
            c_end, sp_end = _shape(sign.end_shape, s.laxness)
            curls = c_start + u * (c_end - c_start)
            spread = sp_start + u[:, 0] * (sp_end - sp_start)
            roll = sign.roll[0] + u[:, 0] * (sign.roll[1] - sign.roll[0])
            yaw = np.full(n, sign.yaw)
            move_to(right, path[0], curls[0], spread[0], roll[0], yaw[0], gap)
            right.add(path, curls, spread, roll, yaw)
            if sign.hands == "mirror":
                lpath = path * np.array([-1, 1, 1])
                move_to(left, lpath[0], curls[0], spread[0], roll[0], yaw[0], gap)
                left.add(lpath, curls, spread, roll, yaw)
            elif sign.hands == "base":
                bc, bs = _shape(sign.base_shape, s.laxness)
                held = self._place(np.array([0.25, 0.45, -0.6]))
                move_to(left, held, bc, bs, 1.3, 0.0, gap)
                left.add(np.repeat(held[None], n, 0) + rng.normal(0, 0.01, (n, 3)), np.repeat(bc[None], n, 0),
                         np.full(n, bs), np.full(n, 1.3), np.zeros(n))
            else:  # the left hand drifts back towards rest
                move_to(left, rest_l, open_hand * 0.3, 0.0, 0.0, 0.0, gap + n)
        tail = int(rng.integers(6, 12))
        for hand, rest in ((right, rest_r), (left, rest_l)):
            move_to(hand, rest, open_hand * 0.3, 0.0, 0.0, 0.0, tail)
        return right.stacked(), left.stacked()  # both hands got the same number of frames

    def render(self, glosses: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
        s = self.s
        (rw, rc, rs, rr, ry), (lw, lc, ls, lr, ly) = self._segments(glosses, rng)
        t = len(rw)
        sway = np.cumsum(rng.normal(0, 0.004, (t, 3)), axis=0)
        sway -= sway.mean(0)
        body = np.zeros((t, pose.POSE_POINTS, 3))
        head = np.array([0.0, -s.neck, -0.1]) + sway * 2
        face_pts = {0: (0, 0.05, -0.25), 1: (0.06, -0.1, -0.2), 2: (0.1, -0.1, -0.2), 3: (0.14, -0.1, -0.2),
                    4: (-0.06, -0.1, -0.2), 5: (-0.1, -0.1, -0.2), 6: (-0.14, -0.1, -0.2), 7: (0.22, -0.05, 0.0),
                    8: (-0.22, -0.05, 0.0), 9: (0.06, 0.2, -0.2), 10: (-0.06, 0.2, -0.2)}
        for i, off in face_pts.items():
            body[:, i] = head + np.array(off) * s.head
        body[:, pose.LEFT_SHOULDER] = np.array([0.5, 0, 0]) + sway
        body[:, pose.RIGHT_SHOULDER] = np.array([-0.5, 0, 0]) + sway
        hips = np.array([0.35, s.torso, 0.05])
        body[:, 23], body[:, 24] = hips, hips * np.array([-1, 1, 1])
        for i, (x, y) in zip(range(25, 33), [(0.35, 2.8), (-0.35, 2.8), (0.35, 3.7), (-0.35, 3.7), (0.35, 3.8),
                                             (-0.35, 3.8), (0.4, 3.9), (-0.4, 3.9)]):
            body[:, i] = (x, y * s.torso / 1.9, 0.05)
        hands = {}
        for side, wrist, curls, spread, roll, yaw, mirror in (
            ("right", rw, rc, rs, rr, ry, False),
            ("left", lw, lc, ls, lr, ly, True),
        ):
            wrist = wrist + sway
            pts = hand_landmarks(curls, spread, roll if not mirror else -roll, yaw, mirror) * s.hand + wrist[:, None]
            hands[side] = pts
            shoulder = body[:, pose.RIGHT_SHOULDER if side == "right" else pose.LEFT_SHOULDER]
            pole = np.array([-0.6 if side == "right" else 0.6, 1.0, 0.3])
            elbow = _elbows(shoulder, wrist, s.upper_arm, s.forearm, pole)
            e, w = (pose.RIGHT_ELBOW, pose.RIGHT_WRIST) if side == "right" else (pose.LEFT_ELBOW, pose.LEFT_WRIST)
            body[:, e], body[:, w] = elbow, wrist
            first = 18 if side == "right" else 17  # pinky, index, thumb knuckles: 17/18, 19/20, 21/22
            body[:, first], body[:, first + 2], body[:, first + 4] = pts[:, 17], pts[:, 5], pts[:, 2]
        face = _face_template() * s.head * 0.45 + head[:, None] + np.array([0, 0.05, -0.25])
        face = face + _mouthing(glosses, t, rng)

        # body units -> image units, camera roll, jitter
        def to_image(p: np.ndarray) -> np.ndarray:
            c, sn = np.cos(s.camera_roll), np.sin(s.camera_roll)
            x, y = p[..., 0] * c - p[..., 1] * sn, p[..., 0] * sn + p[..., 1] * c
            out = np.stack([x, y, p[..., 2]], -1) * s.width
            out[..., :2] += s.centre
            return out + rng.normal(0, s.noise, out.shape)

        frames = np.zeros((t, pose.POSE_FEATURE_DIM), np.float32)
        body_img = to_image(body)
        vis = np.where(np.arange(pose.POSE_POINTS) < 23, rng.uniform(0.93, 1.0, (t, 33)), rng.uniform(0.02, 0.3, (t, 33)))
        frames[:, pose.PART_SLICES["pose"]] = np.concatenate([body_img, vis[..., None]], -1).reshape(t, -1)
        for side in ("left", "right"):
            img = to_image(hands[side])
            img[..., 2] = (hands[side][..., 2] - hands[side][:, :1, 2]) * s.width  # MediaPipe: z relative to wrist
            seen = self._detected(img, rng)
            frames[:, pose.PART_SLICES[f"{side}_hand"]] = (img * seen[:, None, None]).reshape(t, -1)
        frames[:, pose.PART_SLICES["face"]] = to_image(face).reshape(t, -1)
        return frames

    def _detected(self, hand_img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Hands leave the frame, and MediaPipe misses them now and then for a few frames."""
        t = len(hand_img)
        inside = (hand_img[:, 0, 1] < 0.98) & (hand_img[:, 0, 0] > 0.0) & (hand_img[:, 0, 0] < 1.0)
        low = hand_img[:, 0, 1] > self.s.centre[1] + 1.25 * self.s.width  # resting hands are often missed
        starts = rng.random(t) < np.where(low, 4 * self.s.miss_rate, self.s.miss_rate)
        missed = np.zeros(t, bool)
        for i in np.flatnonzero(starts):
            missed[i : i + int(rng.integers(1, 6))] = True
        return inside & ~missed


def _face_template() -> np.ndarray:
    """94 points in the order of :data:`pose.FACE_INDICES` (lips, eyes, brows, nose tip, chin)."""

    def ring(n, cx, cy, rx, ry, z=0.0):
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a), np.full(n, z)], -1)

    lips = np.concatenate([ring(20, 0, 0.5, 0.28, 0.12), ring(20, 0, 0.5, 0.2, 0.05, 0.02)])
    eyes = [ring(16, 0.3, -0.05, 0.14, 0.06), ring(16, -0.3, -0.05, 0.14, 0.06)]
    brows = [np.stack([np.linspace(0.15, 0.5, 10), -0.25 - 0.05 * np.sin(np.linspace(0, np.pi, 10)), np.zeros(10)], -1)]
    brows.append(brows[0] * np.array([-1, 1, 1]))
    return np.concatenate([lips, *eyes, *brows, [[0, 0.2, -0.15]], [[0, 0.85, 0]]])


def _mouthing(glosses: tuple[str, ...], t: int, rng: np.random.Generator) -> np.ndarray:
    """Small mouth openings while signing (a non-manual signal); (T, 94, 3) offsets."""
    open_ = np.clip(np.convolve(rng.random(t) < 0.1, np.ones(6) / 6, mode="same"), 0, 1) * 0.06 * bool(glosses)
    out = np.zeros((t, pose.FACE_POINTS, 3))
    out[:, 0:10, 1] = open_[:, None]  # lower outer lip
    out[:, 20:30, 1] = open_[:, None]  # lower inner lip
    return out


# ----------------------------------------------------------------------------- corpora


@dataclass
class CorpusSpec:
    """What to generate: signers per split, clips per signer, vocabulary and sentence pool."""

    train_signers: int = 8
    dev_signers: int = 1
    test_signers: int = 1
    clips_per_signer: int = 80
    extra_nouns: int = 0  # grows the vocabulary beyond the base ~46 glosses
    sentence_pool: int = 0  # 0: a fresh sentence for every clip; N: N fixed sentences, each signed by everyone
    sentence_glosses: tuple[int, int] | None = None  # (shortest, longest): clauses joined into long sentences
    near_duplicates: bool = False  # the pool is pairs of sentences that differ in one sign (and in their text)
    unknown_sentences: int = 0  # sentences outside the pool, each signed once by every test signer
    signer_variation: float = 1.0  # how much signers differ (body, habits, camera, their own form of each sign)
    seed: int = 0


def generate_corpus(out_dir: str | Path, spec: CorpusSpec = CorpusSpec(),
                    sentences: dict[str, list[Sentence]] | None = None, signers: Collection[int] | None = None) -> Path:
    """Write ``features/*.npy`` and ``manifest.csv`` (signlab's format) under ``out_dir``.

    Returns the manifest path. The manifest has ``sentence_id`` and ``category`` columns too,
    so the same corpus serves the sentence pipeline. ``sentences`` (split -> sentences, e.g. a real
    corpus's gloss sentences) replaces the grammar: the signers of a split sign that split's
    sentences in turn, each at most once, up to ``clips_per_signer`` each. ``signers``: only the
    signers of these indices (train, dev, then test) are written, each as in the whole corpus.
    """
    out = Path(out_dir)
    (out / "features").mkdir(parents=True, exist_ok=True)
    grammar = Grammar(spec.extra_nouns)
    glosses = sorted({g for rows in sentences.values() for s in rows for g in s.glosses}) if sentences else grammar.glosses
    lexicon = make_lexicon(glosses, spec.seed)
    rng = np.random.default_rng([spec.seed, 1])
    splits = ["train"] * spec.train_signers + ["dev"] * spec.dev_signers + ["test"] * spec.test_signers
    pool = _sentence_pool(grammar, spec, rng)
    unknown = _unknown_sentences(grammar, spec, pool, rng)
    rows = []
    jobs = []
    for k, split in enumerate(splits):
        signer = sample_signer(np.random.default_rng([spec.seed, 2, k]), spec.signer_variation)
        if sentences:
            given, j = sentences.get(split, []), splits[:k].count(split)
            picks = given[j * spec.clips_per_signer : (j + 1) * spec.clips_per_signer]
        elif pool:
            picks = [pool[i % len(pool)] for i in range(spec.clips_per_signer)]
        else:
            picks = [_sample(grammar, spec, rng) for _ in range(spec.clips_per_signer)]
        if split == "test" and not sentences:
            picks += unknown
        if signers is None or k in signers:
            jobs.extend((k, split, signer, i, sentence) for i, sentence in enumerate(picks))
    sentence_ids: dict[Sentence, int] = {}
    for k, split, signer, i, sentence in track(jobs, description="rendering synthetic signers", transient=True):
        clip_rng = np.random.default_rng([spec.seed, 3, k, i])
        frames = SyntheticSigner(lexicon, signer).render(sentence.glosses, clip_rng)
        clip_id = f"s{k:02d}_{i:04d}"
        np.save(out / "features" / f"{clip_id}.npy", frames)
        sid = sentence_ids.setdefault(sentence, len(sentence_ids))
        rows.append({
            "id": clip_id, "split": split, "features": f"features/{clip_id}.npy", "feature_kind": HOLISTIC.name,
            "glosses": " ".join(sentence.glosses),
            "text": sentence.text, "signer": f"signer{k:02d}", "sentence_id": sid, "category": _category(sentence),
        })
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    return manifest


def _sentence_pool(grammar: Grammar, spec: CorpusSpec, rng: np.random.Generator) -> list[Sentence]:
    """``spec.sentence_pool`` distinct sentences; with ``near_duplicates``, pairs that differ in one
    sign at one place (and so in their text): "ME COFFEE DRINK" and "ME WATER DRINK"."""
    pool: list[Sentence] = []
    while len(pool) < spec.sentence_pool:
        s = _sample(grammar, spec, rng)
        if s in pool:
            continue
        if not spec.near_duplicates:
            pool.append(s)
            continue
        twin = next((t for t in (_sample(grammar, spec, rng) for _ in range(5000)) if t not in pool and t != s
                     and len(t.glosses) == len(s.glosses) and sum(a != b for a, b in zip(s.glosses, t.glosses)) == 1
                     and t.text != s.text), None)
        if twin is not None:
            pool += [s, twin]
    return pool[: spec.sentence_pool]


def _unknown_sentences(grammar: Grammar, spec: CorpusSpec, pool: list[Sentence],
                       rng: np.random.Generator) -> list[Sentence]:
    """Sentences the phrase book does not hold (and whose text it does not hold either)."""
    texts, out = {s.text for s in pool}, []
    while len(out) < spec.unknown_sentences:
        s = _sample(grammar, spec, rng)
        if s not in pool and s not in out and s.text not in texts:
            out.append(s)
    return out


def _sample(grammar: Grammar, spec: CorpusSpec, rng: np.random.Generator) -> Sentence:
    return grammar.sample_long(rng, *spec.sentence_glosses) if spec.sentence_glosses else grammar.sample(rng)


def _category(sentence: Sentence) -> str:
    if sentence.text.endswith("?"):
        return "question"
    return "negation" if "NOT" in sentence.glosses else "statement"


def stream_with_pauses(clips: list[np.ndarray], fps: float, pause_s: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Pose clips joined into one stream as a signer would sign them, with a rest before each: the
    hands go back to rest over 8 frames and stay there ``pause_s`` (the next clip's first, resting
    frame, with the jitter of that clip's own first frames). Returns the stream's rows and each
    clip's first row in it. What live recognition is measured and tested on."""
    parts, starts, at, last = [], [], 0, None
    for clip in clips:
        rest = clip[0]
        if last is not None:
            ramp = last + (rest - last) * np.linspace(0, 1, 9)[1:, None]
            parts.append(ramp.astype(np.float32))
            at += len(ramp)
        jitter = np.diff(clip[:4], axis=0).std(0) / np.sqrt(2)
        hold = rest + rng.normal(0, 1, (round(pause_s * fps), len(rest))) * jitter
        hold[:, rest == 0] = 0  # missing landmarks stay missing
        parts.append(hold.astype(np.float32))
        at += len(hold)
        starts.append(at)
        parts.append(clip.astype(np.float32))
        at += len(clip)
        last = clip[-1]
    if last is not None:
        parts.append(np.repeat(last[None], round(pause_s * fps), 0).astype(np.float32))
    return np.concatenate(parts), starts
