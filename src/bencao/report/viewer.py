"""The 3-D movie of the report: frames of the trajectory shown with the vendored 3Dmol.js.

The page carries one PDB template (the atom records without coordinates) and the coordinates of
every shown frame as base64 little-endian int16 in units of ``1/scale`` Å.  The browser builds a
multi-model PDB from them and hands it to 3Dmol's ``addModelsAsFrames``; a small loop of our own
steps through the frames with ``setFrame``, so that the page can show a frame counter, a slider,
and count the frames drawn (``document.body.dataset.framesShown``) for tests in a headless browser.
Quantising to 0.01 Å keeps a 60-frame movie of a 2,500-atom protein under 2 MB.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from importlib import resources

import numpy as np

#: Budget (bytes of base64 coordinates) for the movie; frames are dropped to stay under it.
MAX_COORDINATE_BYTES = 3_000_000


def vendored_3dmol() -> str:
    """The source of the vendored 3Dmol.js (minified), to inline in the page."""
    return resources.files("bencao.report").joinpath("vendor/3Dmol-min.js").read_text("utf-8")


def movie_frame_indices(n_frames: int, max_frames: int) -> np.ndarray:
    """``min(max_frames, n_frames)`` distinct frame indices evenly spread from first to last.

    Parameters
    ----------
    n_frames : int
        Frames in the trajectory (>= 1).
    max_frames : int
        Most frames to show (>= 1).

    Returns
    -------
    (k,) int array, increasing, starting at 0 and ending at ``n_frames - 1`` when k > 1.
    """
    count = max(1, min(int(max_frames), int(n_frames)))
    if count == 1:
        return np.array([0])
    # consecutive values are >= 1 apart, so rounding half up keeps them distinct
    return np.floor(np.linspace(0, n_frames - 1, count) + 0.5).astype(int)


def _display_atoms(topology) -> np.ndarray:
    """Atoms to draw: heavy atoms (hydrogens double the page and hide the fold in sticks)."""
    heavy = [a.index for a in topology.atoms
             if a.element is None or a.element.symbol != "H"]
    return np.array(heavy if heavy else [a.index for a in topology.atoms], dtype=int)


def _pdb_template(traj) -> list:
    """ATOM/HETATM, TER and CONECT records of ``traj``, split around the coordinates.

    3Dmol bonds atoms by distance, but between residues only for standard amino acids next to
    each other in sequence; CONECT records carry the other bonds between residues (caps such as
    ACE and NME, disulfides, a ligand bound to the protein).

    Returns
    -------
    list of [prefix, suffix] or [record]
        ``prefix`` is columns 1-30 and ``suffix`` columns 55 onwards of an atom record (one per
        atom of ``traj``, in order); TER and CONECT records come as a one-element list.
    """
    fd, path = tempfile.mkstemp(suffix=".pdb")
    os.close(fd)
    try:
        traj[0].save_pdb(path)
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    finally:
        os.unlink(path)
    template, serials = [], []
    for line in lines:
        if line.startswith(("ATOM", "HETATM")):
            template.append([line[:30], line[54:]])
            serials.append(int(line[6:11]))
        elif line.startswith("TER"):
            template.append([line])
    if len(serials) == traj.n_atoms:
        for a, b in traj.topology.bonds:
            if a.residue.index != b.residue.index:
                template.append([f"CONECT{serials[a.index]:5d}{serials[b.index]:5d}"])
    return template


def _quantise(xyz_angstrom) -> tuple:
    """Coordinates as int16 with the finest scale (1/Å) that fits them; returns (ints, scale)."""
    extent = float(np.abs(xyz_angstrom).max()) if xyz_angstrom.size else 0.0
    for scale in (100.0, 10.0, 1.0):
        if extent * scale < 32000:
            break
    ints = np.round(xyz_angstrom * scale).astype("<i2")
    return ints, scale


def movie_payload(traj, selection: str, time_ps, max_frames: int, ligands=(), pockets=None) -> dict:
    """The data the page needs to play the movie.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The analysed atoms (protein and ligands, or solute), molecules whole; nm.
    selection : str
        "protein" superposes every frame on the first frame's backbone (ligands move with the
        protein); other selections are only centred on the first frame's centre.
    time_ps : (n_frames,) array or None
        Frame times, ps (None: frames are labelled by index).
    max_frames : int
        Most frames to embed.
    ligands : list of mdtraj Residue
        Ligand residues of ``traj.topology``, drawn as sticks with green carbons.
    pockets : dict or None
        {trajectory frame: [(x, y, z, radius, colour index), ...]} in nm, in the coordinates
        of ``traj``'s first frame: pockets drawn as translucent spheres in those frames.

    Returns
    -------
    dict
        ``template`` (see :func:`_pdb_template`), ``coords`` (base64 int16, frame-major,
        ``n_atoms * 3`` values per frame), ``scale`` (int units per Å), ``n_atoms``,
        ``n_residues``, ``n_frames``, ``frames`` (trajectory frame indices), ``times_ps``
        (ps, or None), ``style`` ("protein" or "atoms"); with ligands also ``ligand_atoms``
        (indices of the ligands' atoms among the ``n_atoms`` shown, increasing) and
        ``ligand_names`` (their residue names) and ``n_ligand_residues``; with pockets,
        ``pockets`` (per shown frame, [x, y, z, radius] in Å and a colour index).
    """
    shown = _display_atoms(traj.topology)
    indices = movie_frame_indices(traj.n_frames, max_frames)
    # keep the page within a few MB however large the protein: fewer frames, never fewer than 2
    per_frame = len(shown) * 3 * 2 * 4 / 3
    affordable = max(2, int(MAX_COORDINATE_BYTES // max(per_frame, 1)))
    if len(indices) > affordable:
        indices = movie_frame_indices(traj.n_frames, affordable)
    movie = traj.slice(indices, copy=True)
    if selection == "protein":
        backbone = traj.topology.select("backbone")
        fit = backbone if len(backbone) >= 3 else None
        movie.superpose(traj, frame=0, atom_indices=fit)
        centre = traj.xyz[0, fit if fit is not None else slice(None)].mean(axis=0)
    else:
        centre = traj.xyz[0].mean(axis=0)
    movie.xyz -= centre
    movie = movie.atom_slice(shown)
    ints, scale = _quantise(movie.xyz * 10.0)  # nm -> Å, the PDB unit
    payload = {
        "template": _pdb_template(movie),
        "coords": base64.b64encode(ints.tobytes()).decode("ascii"),
        "scale": scale,
        "n_atoms": int(movie.n_atoms),
        "n_residues": int(movie.topology.n_residues),
        "n_frames": int(movie.n_frames),
        "frames": [int(i) for i in indices],
        "times_ps": None if time_ps is None else [round(float(time_ps[i]), 4) for i in indices],
        "style": "protein" if selection == "protein" else "atoms",
    }
    if pockets:
        payload["pockets"] = [
            [[*(np.round((np.asarray(p[:3]) - centre) * 10.0, 2)).tolist(),
              round(float(p[3]) * 10.0, 2), int(p[4])] for p in pockets.get(int(i), [])]
            for i in indices]
    if ligands:
        ligand_atoms = [a.index for residue in ligands for a in residue.atoms]
        payload["ligand_atoms"] = [int(i) for i in np.flatnonzero(np.isin(shown, ligand_atoms))]
        payload["ligand_names"] = sorted({residue.name for residue in ligands})
        payload["n_ligand_residues"] = len(ligands)
    return payload


def _json_for_script(value) -> str:
    """JSON safe inside a <script> element (no '</' that would close it)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


# The page's own glue around 3Dmol: decode the frames, build a multi-model PDB, step through it.
_PLAYER_JS = r"""
(function () {
  var data = JSON.parse(document.getElementById("movie-data").textContent);
  var element = document.getElementById("viewer");
  var counter = document.getElementById("frame-counter");
  var button = document.getElementById("play-pause");
  var slider = document.getElementById("frame-slider");
  var shown = 0, current = 0, playing = true, timer = null, busy = false;
  var delayMs = 120;
  document.body.dataset.framesShown = "0";

  function decode(b64) {
    var raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new Int16Array(bytes.buffer);
  }
  function coordinate(v) {
    var s = v.toFixed(3);
    while (s.length < 8) s = " " + s;
    return s;
  }
  // PDB serial numbers of the ligand atoms: 3Dmol selects the ligand by them
  var ligandSerials = new Set(), isLigandAtom = new Set(data.ligand_atoms || []);
  function multiModelPdb() {
    var q = decode(data.coords), parts = [], n = data.n_atoms;
    for (var f = 0; f < data.n_frames; f++) {
      parts.push("MODEL     " + (f + 1));
      var atom = 0;
      for (var t = 0; t < data.template.length; t++) {
        var rec = data.template[t];
        if (rec.length === 1) { parts.push(rec[0]); continue; }
        if (f === 0 && isLigandAtom.has(atom)) {
          ligandSerials.add(parseInt(rec[0].substring(6, 11), 10));
        }
        var k = 3 * (f * n + atom);
        parts.push(rec[0] + coordinate(q[k] / data.scale) + coordinate(q[k + 1] / data.scale) +
                   coordinate(q[k + 2] / data.scale) + rec[1]);
        atom++;
      }
      parts.push("ENDMDL");
    }
    return parts.join("\n") + "\nEND\n";
  }
  function label(k) {
    var text = "frame " + (k + 1) + " / " + data.n_frames;
    if (data.times_ps) text += "  (t = " + data.times_ps[k].toFixed(1) + " ps)";
    else text += "  (trajectory frame " + data.frames[k] + ")";
    return text;
  }
  function report(message) {
    element.innerHTML = "";
    var p = document.createElement("p");
    p.className = "note";
    p.textContent = message;
    element.appendChild(p);
    document.body.dataset.viewerError = message;
  }

  if (typeof $3Dmol === "undefined") { report("3Dmol.js did not load."); return; }
  var viewer = $3Dmol.createViewer(element, {backgroundColor: "white", antialias: true});
  if (!viewer) {
    report("This browser cannot show the 3-D movie (WebGL is not available).");
    return;
  }
  viewer.addModelsAsFrames(multiModelPdb(), "pdb");
  if (data.style === "protein" && data.n_residues - (data.n_ligand_residues || 0) >= 10) {
    viewer.setStyle({}, {cartoon: {color: "spectrum"}});
    // side chains as thin sticks on top of the cartoon; the backbone is the cartoon itself
    viewer.addStyle({atom: ["N", "C", "O"], invert: true},
                    {stick: {radius: 0.12, colorscheme: "greyCarbon"}});
  } else {
    // small molecules and peptides too short for a cartoon: balls and sticks
    viewer.setStyle({}, {stick: {radius: 0.14}, sphere: {scale: 0.25}});
  }
  if (ligandSerials.size) {
    // the ligand as sticks with green carbons, so that it stands out from the protein
    var ligand = {predicate: function (atom) { return ligandSerials.has(atom.serial); }};
    viewer.setStyle(ligand, {stick: {radius: 0.22, colorscheme: "greenCarbon"}});
    // how many atoms 3Dmol draws as the ligand, for a test in a headless browser
    document.body.dataset.ligandAtomsDrawn = String(viewer.selectedAtoms(ligand).length);
  }
  viewer.zoomTo();
  // where the viewer is on the page (CSS px), for a screenshot test in a headless browser
  var box = element.getBoundingClientRect();
  document.body.dataset.viewerRect = [box.left + window.scrollX, box.top + window.scrollY,
                                      box.width, box.height].join(",");
  slider.max = String(data.n_frames - 1);

  // tracked pockets as translucent spheres, a colour per pocket
  var pocketColours = ["#e6194b", "#4363d8", "#f58231", "#911eb4", "#3cb44b"];
  function drawPockets(k) {
    if (!data.pockets) return;
    viewer.removeAllShapes();
    var here = data.pockets[k] || [];
    here.forEach(function (p) {
      viewer.addSphere({center: {x: p[0], y: p[1], z: p[2]}, radius: p[3],
                        color: pocketColours[p[4] % pocketColours.length], opacity: 0.45});
    });
    document.body.dataset.pocketsDrawn = String(here.length);
  }
  function draw(k) {
    busy = true;
    return Promise.resolve(viewer.setFrame(k)).then(function () {
      drawPockets(k);
      viewer.render();
      current = k;
      slider.value = String(k);
      counter.textContent = label(k);
      shown += 1;
      document.body.dataset.framesShown = String(shown);
      busy = false;
    });
  }
  function tick() {
    timer = null;
    if (!playing || data.n_frames < 2) return;
    draw((current + 1) % data.n_frames).then(function () {
      if (playing && timer === null) timer = setTimeout(tick, delayMs);
    });
  }
  button.addEventListener("click", function () {
    playing = !playing;
    button.textContent = playing ? "Pause" : "Play";
    if (playing && timer === null && !busy) timer = setTimeout(tick, delayMs);
  });
  slider.addEventListener("input", function () {
    playing = false;
    button.textContent = "Play";
    draw(parseInt(slider.value, 10));
  });
  draw(0).then(function () { timer = setTimeout(tick, delayMs); });
})();
"""


def movie_section(payload: dict, caption: str) -> str:
    """HTML of the movie: the viewer, its controls, the embedded data and the scripts."""
    single = payload["n_frames"] < 2
    return f"""
<section id="movie">
<h2>3-D movie</h2>
<p class="caption">{html.escape(caption)}</p>
<div id="viewer" data-frames="{payload['n_frames']}" data-atoms="{payload['n_atoms']}"></div>
<div class="controls">
<button id="play-pause" type="button"{' disabled' if single else ''}>Pause</button>
<input id="frame-slider" type="range" min="0" max="0" value="0" step="1" aria-label="frame">
<span id="frame-counter">frame 0 / {payload['n_frames']}</span>
</div>
<script type="application/json" id="movie-data">{_json_for_script(payload)}</script>
<script>
/* 3Dmol.js, BSD-3-Clause, (c) University of Pittsburgh and contributors; see the note at the end
   of this page. */
{vendored_3dmol()}
</script>
<script>{_PLAYER_JS}</script>
</section>
"""
