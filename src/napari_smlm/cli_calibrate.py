"""``napari-smlm calibrate``: a bead z-stack -> PSF calibration file (registered by cli.py)."""

from __future__ import annotations

from pathlib import Path


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="3D PSF calibration from a bead z-stack",
        description="Find the beads in a z-stack, align and average them, and write the PSF calibration "
                    "(HDF5: averaged stack, cubic-spline coefficients, astigmatic Gaussian fit). Plane k of the stack "
                    "is taken as z = (k - focus) * z-step, z positive away from the coverslip: right when each step "
                    "brings the focal plane closer to the coverslip; give a negative --z-step if it moved into the sample.")
    p.add_argument("beads", help="bead z-stack TIFF (one plane per z position)")
    p.add_argument("--z-step", type=float, required=True, help="z step between planes [nm] (negative: read backwards)")
    p.add_argument("--out", required=True, help="calibration file to write (.h5)")
    p.add_argument("--pixel-size", type=float, help="camera pixel size [nm] (default: from the TIFF's metadata)")
    p.add_argument("--roi", type=int, help="ROI around each bead [px, odd] (default: about 2 µm)")
    p.add_argument("--exclude", metavar="I,J,...", help="bead numbers (as printed) to leave out of the average")
    p.add_argument("--plot", metavar="PNG", help="also write σx(z), σy(z) and the beads' residuals as a PNG")
    cam = p.add_argument_group("camera (optional: the PSF is normalised, so ADU work as well)")
    cam.add_argument("--camera", help="camera YAML (keys of simulation.camera)")
    cam.add_argument("--baseline", type=float, help="camera baseline / offset [ADU]")
    cam.add_argument("--e-per-adu", type=float, help="electrons per ADU (conversion factor)")
    cam.add_argument("--em-gain", type=float, help="EM gain (EMCCD)")
    cam.add_argument("--qe", type=float, help="quantum efficiency (0-1)")
    cam.add_argument("--camera-kind", choices=("emccd", "scmos", "ideal"), help="camera type")
    p.set_defaults(func=cmd_calibrate, photons=False, estimate_camera=False)


def _camera(args):
    """A camera from the options, or None: calibration does not estimate one (the
    beads fill the frames, and the PSF's shape does not depend on it)."""
    from .cli import _camera_from_args

    if not (args.camera or args.camera_kind or any(getattr(args, k) is not None
                                                   for k in ("baseline", "e_per_adu", "em_gain", "qe"))):
        return None
    return _camera_from_args(args)


def cmd_calibrate(args) -> int:
    import numpy as np

    from .cli import _number, _same_file, describe_camera
    from .core.calibration import calibrate_file, is_calibration_file, save_calibration
    from .core.utils import check_writable

    out = Path(args.out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"--out {out}: expected an .h5 file name")
    check_writable(out, "--out")
    if _same_file(out, args.beads):
        raise ValueError(f"--out {out}: is the bead stack itself; choose another name")
    if out.exists():
        if not is_calibration_file(out):
            raise ValueError(f"--out {out}: exists and is not a calibration napari-smlm wrote; "
                             "choose another name (it is left as it is)")
    if args.plot:
        check_writable(args.plot, "--plot")
    z_step = _number(args.z_step, "--z-step", low=-float("inf"))
    if z_step == 0:
        raise ValueError("--z-step: expected a non-zero step in nm")
    pixel_size = _number(args.pixel_size, "--pixel-size")
    exclude = []
    if args.exclude:
        try:
            exclude = [int(v) - 1 for v in args.exclude.replace(" ", "").split(",") if v]
        except ValueError:
            raise ValueError(f"--exclude {args.exclude}: expected bead numbers such as 2,5") from None
    camera = _camera(args)
    print(f"camera: {describe_camera(camera) if camera else 'none given; the stack is used in ADU'}")
    cal = calibrate_file(args.beads, z_step, pixel_size, camera, roi_px=args.roi, exclude=exclude)
    b = cal.beads
    print(f"{len(b['used'])} bead(s) found:")
    for i in range(len(b["used"])):
        state = (f"used, focus {b['focus_nm'][i]:+.0f} nm, residual {b['residual'][i]:.3f}" if b["used"][i]
                 else f"left out: {b['reason'][i]}")
        print(f"  {i + 1:3d}  x {b['x_px'][i]:7.1f} px  y {b['y_px'][i]:7.1f} px  {state}")
    print(cal.summary())
    if np.sum(b["used"]) < 3:
        print("note: fewer than 3 beads averaged; the spline will carry their noise")
    save_calibration(cal, out)
    print(f"wrote {out}")
    if args.plot:
        from .core.calibration import plot_calibration

        plot_calibration(cal, args.plot)
        print(f"wrote {args.plot}")
    return 0
