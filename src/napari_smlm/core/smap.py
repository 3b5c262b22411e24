"""Read SMAP's 3D PSF calibrations (``*_3dcal.mat``), as DECODE uses them.

SMAP (Ries lab, github.com/jries/SMAP) calibrates a PSF from a bead z-stack and
saves a cubic spline of the averaged bead (Li et al., Nature Methods 2018), and
for astigmatic modalities also a Gaussian σx(z), σy(z) fit. DECODE reads the same
file (``decode/utils/calibration_io.py``, ``SMAPSplineCoefficient``). This module
turns such a file into a sampled PSF stack; numpy, scipy and h5py only.

**The layout**, established from the public code:

* ``fit3Dcspline/calibrate3D_g.m`` (jries/SMAP) saves, from SMAP,
  ``save(file, 'SXY', 'parameters')`` with ``SXY(X, Y)`` a struct (an array for a
  spatially resolved calibration; ``SXY(1)``, ``SXY(2)`` for two cameras, chosen by
  the fitter's "channel" menu) with the fields ``cspline``, ``gauss_zfit``,
  ``gauss_sx2_sy2``, ``gausscal``, ``PSF``, ``Xrange``, ``Yrange``, ``EMon``…; run
  outside SMAP it saves ``cspline``, ``gauss_zfit``… as top-level variables instead
  (both are read here). DECODE loads it with
  ``scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)['SXY']``.
  MATLAB's default format is v5/v7 (scipy); a v7.3 file (HDF5) is read with h5py.
* ``cspline.coeff`` (``fit3Dcspline/private/getstackcal_g.m``) is a cell array of
  single arrays, one per channel (one for an ordinary calibration, two for a
  global/4Pi fit), each from ``shared/myfunctions/Spline3D_interp.m``: shape
  ``(N1, N2, Nz, 64)`` for a PSF sampled on ``(N1+1, N2+1, Nz+1)`` grid points, one
  tricubic polynomial per voxel. Dimension 1 is the camera image's rows (the
  MATLAB array ``image(y, x)``; SMAP's ``RoiCutterWF.m`` cuts ROIs as
  ``image(ypix±dn, xpix±dn)``, bead stacks likewise, and ``MLE_GPU_Yiming.m`` sets
  ``ypix = P(:,1)``), dimension 2 the columns (x), dimension 3 z. Term
  ``16·l + 4·m + n`` (0-based) multiplies ``dr^n · dc^m · dz^l``, dr, dc, dz the
  offsets in [0, 1] within the voxel along rows, columns and z
  (``computeDelta3Dj_v2.m``: ``delta_f(i*16+j*4+k+1) = x^k y^j z^i`` with the
  fitter's x along dimension 1, and ``fAt3Dj_v2.m``: ``coeff(xc+1, yc+1, zc+1, :)``).
  ``Spline3D_interp`` fits each voxel to a spline upsampling of the grid, so the
  polynomial interpolates the data: term 0 of voxel (i, j, k) is the PSF at grid
  point (i, j, k), and the last grid plane of each axis is the last voxel's
  polynomial at offset 1. The stack recovered here is SMAP's smoothed average bead
  (``splinefit.PSFsmooth``), normalised as SMAP left it.
* ``cspline.dz``: the stack's z step in nm (``p.dz``). ``cspline.x0 = dRx + 1``
  with ROI ``2·dRx + 1``: the 1-based index of the lateral centre pixel, where the
  emitter sits (DECODE: ``ref0 = (x0 - 1, x0 - 1, z0)``).
* ``cspline.z0``: the focal plane. SMAP computes it as a 1-based plane index
  (``find(rangez >= z, 1)`` or ``getfocusPSF``), but both consumers use it as a
  0-based spline coordinate without subtracting 1: SMAP's fitter
  (``plugins/+WorkflowModules/+Fitters/MLE_GPU_Yiming.m``:
  ``znm = -(P(:,5) - z0)·dz``, P(:,5) the 0-based spline z) and DECODE
  (``psf_kernel.CubicSplinePSF.coord2impl``: ``-z/dz + z0``). Following them, grid
  plane k (0-based) shows a molecule at **z = −(k − z0)·dz** in the localisations
  SMAP and DECODE make with the file. (SMAP's standalone example scripts,
  ``fit3Dcspline/example_3D_fit.m``, use ``+(k − z0)·dz``.)
* ``gauss_zfit`` (``fit3Dcspline/private/getzfitpar.m``, used by the Gaussian "z"
  fitter ``GPUmleFit_LM`` mode 3): 8 numbers
  ``[σ0x, Ax, Ay, Bx, By, γ, d, σ0y]``, σ0 in camera pixels, γ and d in µm, with
  ``σx = σ0x·sqrt(1 + u² + Ax·u³ + Bx·u⁴), u = (z − γ)/d`` and σy the same with
  ``u = (z + γ)/d`` (``CPUgaussLib.cpp``, ``kernel_DerivativeIntGauss2Dz``). Its z is
  the frame direction, ``+(k − f0)·dz`` (``calibrate3D_g.m``: ``ch.z``), and its "x"
  width is along the fitter's first dimension, i.e. the image rows.
* The pixel size is not in ``SXY``; ``parameters.pixelsize{1}`` holds the camera's
  pixel size in µm when SMAP's image loader read the beads
  (``readbeadimages.m``: ``r.metadata.cam_pixelsize_um``; its fallback TIFF reader
  writes a placeholder 100, ignored here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = ["read_smap_3dcal"]

_MISSING = object()
_CONVENTIONS = ("fitter", "stack")


class _H5:
    """A node of a MATLAB v7.3 (HDF5) file: a struct group or an array dataset."""

    def __init__(self, f, obj):
        self.f, self.obj = f, obj


def _first(x, notes: list, what: str):
    """Unwrap scipy's object arrays (cells, struct arrays) to their first element."""
    while isinstance(x, np.ndarray) and x.dtype == object:
        if x.size == 0:
            return _MISSING
        if x.size > 1:
            notes.append(f"{what} holds {x.size} entries; the first was read")
        x = x.flat[0]
    return x


def _h5_deref(node: _H5, notes: list, what: str):
    """Follow HDF5 object references (a cell, or a field of a struct array) to the first element."""
    import h5py

    obj = node.obj
    while isinstance(obj, h5py.Dataset) and h5py.check_dtype(ref=obj.dtype) is not None:
        refs = obj[()]
        if refs.size == 0:
            return _MISSING
        if refs.size > 1:
            cls = obj.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            label = what if cls == "cell" else what.rsplit(".", 1)[0]  # else: the parent is a struct array
            notes.append(f"{label} holds {refs.size} entries; the first was read")
        obj = node.f[refs.flat[0]]
    return _H5(node.f, obj)


def _child(node, name: str, notes: list, what: str):
    """Field ``name`` of a struct (scipy mat_struct, dict from loadmat, or HDF5 group)."""
    if node is _MISSING or node is None:
        return _MISSING
    if isinstance(node, _H5):
        import h5py

        if not isinstance(node.obj, h5py.Group) or name not in node.obj:
            return _MISSING
        return _h5_deref(_H5(node.f, node.obj[name]), notes, what)
    if isinstance(node, dict):
        value = node.get(name, _MISSING)
    else:
        names = getattr(node, "_fieldnames", None)
        if names is None or name not in names:
            return _MISSING
        value = getattr(node, name)
    return _first(value, notes, what)


def _array(node) -> np.ndarray:
    """A numeric array in MATLAB's index order."""
    if isinstance(node, _H5):
        import h5py

        ds = node.obj
        if not isinstance(ds, h5py.Dataset):
            raise TypeError("a struct, not an array")
        if ds.attrs.get("MATLAB_empty", 0):
            return np.zeros(0)
        a = np.asarray(ds[()])
        return a.T if a.ndim > 1 else a  # MATLAB writes column-major: HDF5 shows the axes reversed
    a = np.asarray(node)
    if a.dtype == object:
        raise TypeError("not numeric")
    return a


def _number(node) -> float:
    a = np.asarray(_array(node), dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty")
    return float(a[0])


def _open(path: Path):
    """The file's top level as a struct-like node, and a description of the format."""
    import h5py

    if h5py.is_hdf5(str(path)):
        try:
            f = h5py.File(str(path), "r")
        except OSError as exc:
            raise ValueError(f"SMAP calibration {path}: cannot open it as a MATLAB v7.3 (HDF5) file ({exc})") from None
        return f, _H5(f, f["/"]), "MATLAB v7.3 (HDF5)"
    from scipy import io as sio

    try:
        d = sio.loadmat(str(path), struct_as_record=False, squeeze_me=True,
                        variable_names=["SXY", "cspline", "gauss_zfit", "parameters"])
    except Exception as exc:  # scipy raises several kinds for a file that is not a .mat
        raise ValueError(f"SMAP calibration {path}: not a MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    return None, d, "MATLAB v5"


def _pixel_size_nm(top, sxy, prefix: str, notes: list) -> tuple[Any, str]:
    scratch: list = []
    params = _child(top, "parameters", scratch, "parameters")
    for field in ("pixelsize", "cam_pixelsize_um"):  # µm
        node = _child(params, field, scratch, f"parameters.{field}")
        if node is _MISSING:
            continue
        try:
            values = np.asarray(_array(node), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            continue
        if values.size and np.isfinite(values[0]) and 0 < values[0] < 10:  # SMAP's fallback reader writes 100
            if values.size > 1 and not np.isclose(values[0], values[1]):
                notes.append(f"pixel size {values[0] * 1000:g} × {values[1] * 1000:g} nm; the first was taken")
            return float(values[0] * 1000), f"parameters.{field}"
        if values.size:
            notes.append(f"parameters.{field} = {values[0]:g} is no pixel size in µm (SMAP's fallback TIFF reader "
                         f"writes 100); ignored")
    zfit = _child(sxy, "zernikefit", scratch, f"{prefix}zernikefit")
    node = _child(zfit, "pixelSizeX", scratch, f"{prefix}zernikefit.pixelSizeX")
    if node is not _MISSING:
        try:
            v = _number(node)
            if np.isfinite(v) and v > 0:
                return v, f"{prefix}zernikefit.pixelSizeX"
        except (TypeError, ValueError):
            pass
    return None, ""


def _astigmatic(zfit: np.ndarray, pixel_size_nm: float, convention: str) -> dict:
    """SMAP's gauss_zfit [σ0x, Ax, Ay, Bx, By, γ, d, σ0y] (px, µm) -> Huang et al. parameters
    for our axes (x = image columns, y = image rows) and our z."""
    s0r, a_r, a_c, b_r, b_c, g, d, s0c = (float(v) for v in zfit[:8])
    g_nm, d_nm = g * 1000.0, d * 1000.0
    # SMAP's "x" width is along the rows (our y) and centred at z_g = +γ; its "y" width,
    # along the columns (our x), at z_g = -γ. z_g is the frame direction.
    sign = -1.0 if convention == "fitter" else 1.0  # fitter: z = -z_g, so u -> -u: γ and A change sign
    return {
        "sigma0_x_nm": s0c * pixel_size_nm, "gamma_x_nm": sign * -g_nm, "d_x_nm": d_nm, "A_x": sign * a_c, "B_x": b_c,
        "sigma0_y_nm": s0r * pixel_size_nm, "gamma_y_nm": sign * g_nm, "d_y_nm": d_nm, "A_y": sign * a_r, "B_y": b_r,
    }


def _sample_spline(coeff: np.ndarray) -> np.ndarray:
    """The PSF at the grid points, (N1+1, N2+1, Nz+1), from SMAP's (N1, N2, Nz, 64) coefficients."""
    n = coeff.shape[:3]
    c = coeff.reshape(*n, 4, 4, 4)  # term 16·l + 4·m + n: axes (l: z power, m: column power, n: row power)
    out = np.empty(tuple(k + 1 for k in n))
    out[: n[0], : n[1], : n[2]] = c[..., 0, 0, 0]
    grid = np.indices(out.shape).reshape(3, -1)
    last = (grid[0] == n[0]) | (grid[1] == n[1]) | (grid[2] == n[2])
    pts = grid[:, last]
    vox = np.minimum(pts, np.array(n)[:, None] - 1)
    t = (pts - vox).astype(np.float64)  # 0 or 1: the far faces are the last voxel's polynomial at offset 1
    powers = t[..., None] ** np.arange(4)  # (3, m, 4)
    cc = c[vox[0], vox[1], vox[2]]
    out[tuple(pts)] = np.einsum("mzcr,mr,mc,mz->m", cc, powers[0], powers[1], powers[2])
    return out


def read_smap_3dcal(path: Union[str, Path], z_convention: str = "fitter") -> dict:
    """Read a SMAP 3D calibration (``*_3dcal.mat``, MATLAB v5/v7 or v7.3).

    Returns a dict:

    * ``"stack"``: float64 (Z, H, W), the PSF at the spline's grid points (H along
      the camera image's rows, W along its columns), z increasing with the index;
    * ``"z_step_nm"``: ``cspline.dz``;
    * ``"focus_index"``: the index of z = 0 in ``stack``;
    * ``"center_index"``: the 0-based row and column index of the emitter (``x0 − 1``);
    * ``"pixel_size_nm"``: from ``parameters.pixelsize`` (µm) or
      ``zernikefit.pixelSizeX``, else None;
    * ``"astigmatic"``: ``gauss_zfit`` as ``sigma0_x_nm, gamma_x_nm, d_x_nm, A_x, B_x``
      and the same for y, σ(z) = σ0·sqrt(1 + u² + A·u³ + B·u⁴), u = (z − γ)/d (Huang
      et al. 2008), in this stack's z; None without ``gauss_zfit`` (a non-astigmatic
      calibration) or without a pixel size (σ0 is in pixels; then ``"source"`` gives it);
    * ``"source"``: what was read, from where, and how z was defined.

    ``z_convention``: ``"fitter"`` (default) gives z as SMAP's spline fitter and DECODE
    report it for this file, z = −(k − z0)·dz for file plane k, so the file's planes
    come reversed. ``"stack"`` keeps the file's order, z = +(k − z0)·dz (SMAP's
    example scripts; the frame direction of the bead stack). ``gauss_zfit`` is
    converted to the same z, so both models describe the same PSF at each z.

    Where ``SXY`` holds several entries (two cameras, or a spatially resolved
    calibration) or ``cspline.coeff`` several channels, the first is read and
    ``"source"`` says so. A file that is not a SMAP calibration, or lacks a field
    this needs, raises ValueError naming the file and the field; a missing file,
    FileNotFoundError. The layout, with where it comes from, is in this module's
    docstring.
    """
    path = Path(path)
    if z_convention not in _CONVENTIONS:
        raise ValueError(f"z_convention must be one of {_CONVENTIONS}, not {z_convention!r}")
    if not path.is_file():
        raise FileNotFoundError(f"SMAP calibration {path}: no such file")
    notes: list[str] = []
    f, top, fmt = _open(path)
    try:
        sxy = _child(top, "SXY", notes, "SXY")
        where, prefix = "SXY", "SXY."
        if sxy is _MISSING:
            if _child(top, "cspline", [], "cspline") is _MISSING:
                raise ValueError(f"SMAP calibration {path}: no variable 'SXY' (nor a top-level 'cspline'); "
                                 f"not a SMAP 3D calibration file")
            sxy, where, prefix = top, "top level", ""
        cspline = _child(sxy, "cspline", notes, f"{prefix}cspline")
        if cspline is _MISSING:
            raise ValueError(f"SMAP calibration {path}: missing field '{prefix}cspline' (the spline PSF); "
                             f"is this a SMAP 3D calibration?")

        def field(name, required=True):
            node = _child(cspline, name, notes, f"{prefix}cspline.{name}")
            if node is _MISSING and required:
                raise ValueError(f"SMAP calibration {path}: missing field '{prefix}cspline.{name}'")
            return node

        try:
            coeff = np.asarray(_array(field("coeff")), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.coeff' is not a numeric array") from None
        if coeff.ndim != 4 or coeff.shape[3] != 64 or min(coeff.shape[:3]) < 1:
            raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.coeff' has shape {coeff.shape}, "
                             f"expected (rows, columns, z, 64)")
        if not np.all(np.isfinite(coeff)):
            raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.coeff' holds NaN or infinite values")
        values = {}
        for name in ("dz", "z0"):
            try:
                values[name] = _number(field(name))
            except (TypeError, ValueError):
                raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.{name}' is not a number") from None
        dz, z0 = values["dz"], values["z0"]
        if not (np.isfinite(dz) and dz > 0):
            raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.dz' = {dz:g}, "
                             f"expected a positive step in nm")
        if not np.isfinite(z0):
            raise ValueError(f"SMAP calibration {path}: field '{prefix}cspline.z0' is not finite")
        x0_node = field("x0", required=False)
        n_rows, n_cols = coeff.shape[0] + 1, coeff.shape[1] + 1
        try:
            centre = _number(x0_node) - 1.0 if x0_node is not _MISSING else (n_rows - 1) / 2.0
        except (TypeError, ValueError):
            centre = (n_rows - 1) / 2.0
        if x0_node is _MISSING:
            notes.append("no cspline.x0: the emitter is taken at the centre pixel")

        grid = _sample_spline(coeff)  # (rows, columns, z) in file order
        nz = grid.shape[2]
        stack = np.ascontiguousarray(grid.transpose(2, 0, 1))
        if z_convention == "fitter":
            stack = np.ascontiguousarray(stack[::-1])
            focus = (nz - 1) - z0
            zdef = (f"z = -(k - z0)·dz for file plane k (SMAP's spline fitter and DECODE), planes reversed so z "
                    f"increases: focus at index {focus:g}")
        else:
            focus = z0
            zdef = f"z = (k - z0)·dz for file plane k (the bead stack's frame direction): focus at index {focus:g}"

        pixel_size, pixel_from = _pixel_size_nm(top, sxy, prefix, notes)
        astig = None
        zfit_node = _child(sxy, "gauss_zfit", [], f"{prefix}gauss_zfit")
        if zfit_node is not _MISSING:
            try:
                zfit = np.asarray(_array(zfit_node), dtype=np.float64).ravel()
            except (TypeError, ValueError):
                zfit = np.zeros(0)
            if zfit.size == 0:
                pass  # SMAP writes [] for a non-astigmatic modality
            elif zfit.size < 8 or not np.all(np.isfinite(zfit[:8])):
                notes.append(f"gauss_zfit has {zfit.size} values (expected 8 finite ones); not used")
            elif pixel_size is None:
                notes.append(f"gauss_zfit read, but without a pixel size its σ0 (rows {zfit[0]:.3g} px, columns "
                             f"{zfit[7]:.3g} px) cannot be given in nm; astigmatic left out")
            else:
                astig = _astigmatic(zfit, pixel_size, z_convention)

        source = (f"SMAP 3D calibration {path.name} ({fmt}, {where}): cspline of {nz} planes × {n_rows}×{n_cols} px, "
                  f"dz {dz:g} nm, z0 {z0:g}; {zdef}")
        if pixel_size is not None:
            source += f"; pixel size {pixel_size:g} nm from {pixel_from}"
        else:
            source += "; no pixel size in the file"
        if astig is not None:
            source += ("; gauss_zfit as the astigmatic Gaussian (σ0 × pixel size, γ and d µm→nm, "
                       "SMAP's x = image rows = our y)")
        if notes:
            source += "; " + "; ".join(dict.fromkeys(notes))
        return {
            "stack": stack,
            "z_step_nm": float(dz),
            "focus_index": float(focus),
            "center_index": float(centre),
            "pixel_size_nm": pixel_size,
            "astigmatic": astig,
            "source": source,
        }
    finally:
        if f is not None:
            f.close()
