"""Pockets followed along a trajectory: the same pocket in frame after frame is one track.

A pocket joins the track whose latest pocket shares the most lining residues with it (Jaccard
index at least 0.3), each track taking at most one pocket per frame; a pocket that joins no
track starts one.  A track that was not open in the first frame is a cryptic-pocket candidate:
the structure hid it, the motion opened it (if it is open in at least a tenth of the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_OVERLAP = 0.3     # Jaccard index of lining residues for two pockets to be one
CRYPTIC_MIN_OPEN = 0.1  # a pocket closed at first must be open this often to be a candidate


@dataclass
class Track:
    """One pocket followed over the frames.

    Attributes
    ----------
    number : int
        1-based, in order of first appearance.
    frames : list of int
        Frames it was open in.
    volumes, druggability, scores : list of float
        Its volume (nm^3), druggability and score in those frames.
    residues : set of str
        Every residue that lined it in some frame.
    last_residues : set of str
        Those of its latest pocket (what the next frame is matched against).
    """

    number: int
    frames: list = field(default_factory=list)
    volumes: list = field(default_factory=list)
    druggability: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    residues: set = field(default_factory=set)
    last_residues: set = field(default_factory=set)

    def add(self, frame: int, pocket) -> None:
        self.frames.append(frame)
        self.volumes.append(pocket.volume)
        self.druggability.append(pocket.druggability)
        self.scores.append(pocket.score)
        self.last_residues = set(pocket.residues)
        self.residues |= self.last_residues

    def open_fraction(self, n_frames: int) -> float:
        """Share of the frames it was open in."""
        return len(self.frames) / max(n_frames, 1)

    def cryptic(self, n_frames: int) -> bool:
        """Closed in the first frame and open in at least a tenth of them: a cryptic-pocket
        candidate (pockets that flicker open once are noise, not candidates)."""
        return (bool(self.frames) and self.frames[0] > 0
                and self.open_fraction(n_frames) >= CRYPTIC_MIN_OPEN)


class Tracker:
    """Match each frame's pockets to the tracks so far (frames must come in order)."""

    def __init__(self):
        self.tracks: list[Track] = []

    def add_frame(self, frame: int, pockets) -> list[int]:
        """Assign the frame's pockets to tracks; return the track number of each pocket."""
        overlaps = []
        for p, pocket in enumerate(pockets):
            mine = set(pocket.residues)
            for t, track in enumerate(self.tracks):
                union = len(mine | track.last_residues)
                if union:
                    jaccard = len(mine & track.last_residues) / union
                    if jaccard >= MIN_OVERLAP:
                        overlaps.append((jaccard, p, t))
        assigned: dict[int, int] = {}
        taken = set()
        for _, p, t in sorted(overlaps, key=lambda item: (-item[0], item[1], item[2])):
            if p not in assigned and t not in taken:
                assigned[p] = t
                taken.add(t)
        numbers = []
        for p, pocket in enumerate(pockets):
            if p not in assigned:
                self.tracks.append(Track(number=len(self.tracks) + 1))
                assigned[p] = len(self.tracks) - 1
            track = self.tracks[assigned[p]]
            track.add(frame, pocket)
            numbers.append(track.number)
        return numbers

    def ranked(self, n_frames: int) -> list[Track]:
        """Tracks by how often and how well they were open: open fraction x mean score."""
        return sorted(self.tracks, key=lambda t: -t.open_fraction(n_frames) * float(np.mean(t.scores)))
