"""GUI tests of the 3D half of Render and Evaluate (issue 12), in a real napari viewer.

Widgets are opened as napari's Plugins menu opens them; run under Xvfb:
``xvfb-run -a pytest tests/test_widgets_3d.py``.
"""

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (scripts/setup.sh testing installs it)")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

import matplotlib  # noqa: E402

from napari_smlm._layers import table_to_points  # noqa: E402

from .gui_helpers import click, messages, open_widget, wait_idle  # noqa: E402,F401

PX = 100.0  # camera pixel [nm]


def clusters(z_values=(-500.0, 0.0, 500.0), n=30, seed=0):
    """Three tight clusters of localizations side by side (x = 500, 1500, 2500 nm), one per z."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("frame", "x", "y", "z")}
    for i, z in enumerate(z_values):
        cols["frame"].append(rng.integers(0, 10, n))
        cols["x"].append(500.0 + 1000.0 * i + rng.normal(0, 5, n))
        cols["y"].append(800.0 + rng.normal(0, 5, n))
        cols["z"].append(np.full(n, z))
    table = {k: np.concatenate(v) for k, v in cols.items()}
    m = len(table["x"])
    table.update(photons=np.full(m, 2000.0), bg=np.full(m, 50.0), prob=np.ones(m), sigma_x=np.full(m, 10.0),
                 sigma_y=np.full(m, 10.0), sigma_z=np.full(m, 30.0))
    return table


def add_localizations(viewer, table, name="3D localizations"):
    """A Points layer as Localize or our reader makes it (frame, row, col; features in nm)."""
    data, features = table_to_points(table, PX)
    return viewer.add_points(data, features=features, name=name, size=1.0, axis_labels=("frame", "y", "x"),
                             metadata={"pixel_size_nm": PX, "napari_smlm": "localizations"})


def pixel_of(x_nm, y_nm, render_px):
    return int(y_nm // render_px), int(x_nm // render_px)


def hue(rgb):
    rgb = np.asarray(rgb, float)[:3]
    return rgb / rgb.max()


def test_render_widget_colours_by_z_with_a_colour_bar(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    points = add_localizations(viewer, clusters())
    r = open_widget(viewer, "Render")
    assert r.points.value == points
    # the z fields are shown and start at the data's z range
    assert not r.z_min.native.isHidden() and (r.z_min.value, r.z_max.value) == (-500.0, 500.0)
    r.mode.value = "colour by z"
    assert not r.colormap.native.isHidden() and r.colormap.value == "rainbow"
    click(r.button)
    wait_idle(qtbot, r)
    assert not messages["error"], messages["error"]
    layer = r.layer
    assert layer is not None and layer in viewer.layers and layer.rgb
    image = np.asarray(layer.data)
    assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert layer.metadata["z_limits_nm"] == (-500.0, 500.0) and layer.metadata["color_by"] == "z"
    cmap = matplotlib.colormaps["rainbow"]
    for x_nm, t in ((500.0, 0.0), (1500.0, 0.5), (2500.0, 1.0)):
        i, j = pixel_of(x_nm, 800.0, 10.0)
        centre = image[i - 1:i + 2, j - 1:j + 2].reshape(-1, 3)
        peak = centre[np.argmax(centre.sum(1))]
        assert peak.max() > 0.5, (x_nm, peak)  # a bright cluster
        np.testing.assert_allclose(hue(peak), hue(cmap(t)), atol=0.02, err_msg=f"cluster at x = {x_nm} nm")
    # the render overlays the points: 10 nm render pixels on 100 nm camera pixels
    assert np.allclose(layer.scale[-2:], 0.1)
    # the colour bar in the dock: z in nm over the same limits, in the same colour map
    assert not r._colorbar_canvas.isHidden()
    cax = r._colorbar_figure.axes[0]
    assert cax.get_xlabel() == "z [nm]" and cax.get_xlim() == pytest.approx((-500.0, 500.0))
    assert "-500" in r.status.value and "500 nm" in r.status.value

    # a z slab: only the cluster at +500 nm is left; the colour scale follows the slab
    r.z_min.value, r.z_max.value = 250.0, 600.0
    click(r.button)
    wait_idle(qtbot, r)
    slab = np.asarray(r.layer.data)
    assert slab.shape == image.shape  # same field of view: slabs overlay
    for x_nm in (500.0, 1500.0):
        i, j = pixel_of(x_nm, 800.0, 10.0)
        assert slab[i - 3:i + 4, j - 3:j + 4].max() == 0.0, x_nm
    i, j = pixel_of(2500.0, 800.0, 10.0)
    peak = slab[i - 1:i + 2, j - 1:j + 2].reshape(-1, 3)
    peak = peak[np.argmax(peak.sum(1))]
    np.testing.assert_allclose(hue(peak), hue(cmap((500.0 - 250.0) / 350.0)), atol=0.02)
    assert r._colorbar_figure.axes[0].get_xlim() == pytest.approx((250.0, 600.0))

    # density of the same slab: counts only from the +500 cluster
    r.mode.value = "density"
    r.blur.value = "histogram"
    assert r._colorbar_canvas.isHidden()
    click(r.button)
    wait_idle(qtbot, r)
    assert not r.layer.rgb and np.asarray(r.layer.data).sum() == pytest.approx(30)

    # z stack: one slice per 100 nm, the clusters in their slices, in a 3D viewer of its own, in nm
    r.mode.value = "z stack (3D view)"
    r.z_min.value, r.z_max.value = -500.0, 500.0
    r.z_bin.value = 100.0
    n_layers = len(viewer.layers)
    click(r.button)
    wait_idle(qtbot, r)
    try:
        assert not messages["error"], messages["error"]
        assert len(viewer.layers) == n_layers  # the movie's viewer keeps its frame axis to itself
        stack = r.volume_viewer
        assert stack is not None and r.layer in stack.layers and stack.dims.ndisplay == 3
        volume = np.asarray(r.layer.data)
        edges = np.asarray(r.layer.metadata["z_edges_nm"])
        assert volume.ndim == 3 and len(edges) == volume.shape[0] + 1 and volume.sum() == pytest.approx(90)
        for z in (-500.0, 0.0, 500.0):
            assert volume[np.searchsorted(edges, z, side="right") - 1].sum() == pytest.approx(30), z
        assert tuple(r.layer.scale) == pytest.approx((100.0, 10.0, 10.0))
        # the slice holding z = 0 sits at z = 0 in the world (centre of the slice [0, 100) at 50 nm)
        k = np.searchsorted(edges, 0.0, side="right") - 1
        assert r.layer.data_to_world((k, 0, 0))[0] == pytest.approx(50.0)
        # a second stack goes into the same window
        click(r.button)
        wait_idle(qtbot, r)
        assert r.volume_viewer is stack and len(stack.layers) == 2
    finally:
        if r.volume_viewer is not None:
            r.volume_viewer.close()


def test_render_widget_on_2d_localizations_keeps_its_defaults(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    table = clusters(z_values=(0.0, 0.0, 0.0))
    points = add_localizations(viewer, table, "2D localizations")
    r = open_widget(viewer, "Render")
    assert r.points.value == points and r.mode.value == "density"
    # nothing about z to choose for 2D data
    assert r.z_min.native.isHidden() and r.z_max.native.isHidden() and r._colorbar_canvas.isHidden()
    click(r.button)
    wait_idle(qtbot, r)
    assert not messages["error"], messages["error"]
    image = np.asarray(r.layer.data)
    assert image.ndim == 2 and 85 < image.sum() <= 90.01  # blur at the image edge loses a little
    assert tuple(r.layer.colormap.name for _ in (0,)) == ("hot",)
    # colouring 2D data by z is harmless: one colour, the colour map's middle
    r.mode.value = "colour by z"
    assert "2D" in r.status.value
    click(r.button)
    wait_idle(qtbot, r)
    assert not messages["error"], messages["error"]
    rgb = np.asarray(r.layer.data)
    i, j = pixel_of(1500.0, 800.0, 10.0)
    peak = rgb[i - 1:i + 2, j - 1:j + 2].reshape(-1, 3)
    peak = peak[np.argmax(peak.sum(1))]
    np.testing.assert_allclose(hue(peak), hue(matplotlib.colormaps["rainbow"](0.5)), atol=0.02)


def test_evaluate_widget_shows_the_axial_numbers(make_napari_viewer, qtbot, messages):
    rng = np.random.default_rng(3)
    gt = clusters(n=10, seed=1)
    gt["z"] = rng.uniform(-600, 600, len(gt["x"]))
    gt["x"] = gt["x"] + rng.uniform(0, 4000, len(gt["x"]))  # apart, so the matching is unambiguous
    pred = {k: np.array(v, copy=True) for k, v in gt.items()}
    pred["z"] = pred["z"] + 40.0  # a known axial bias
    viewer = make_napari_viewer()
    gt_layer = add_localizations(viewer, gt, "truth")
    gt_layer.metadata["napari_smlm"] = "ground truth"
    add_localizations(viewer, pred, "localizations")
    e = open_widget(viewer, "Evaluate")
    assert e.tolerance_z.value == 500.0
    metrics = e.run()
    assert metrics is not None and not messages["error"], messages["error"]
    assert metrics["is_3d"] and metrics["bias_z"] == pytest.approx(40.0, abs=1e-6)
    text = e.table.value
    for line in ("RMSE axial", "bias z", "efficiency 3D"):
        assert line in text, text
    assert "40.0 nm" in text
    # the errors against the true z are drawn
    labels = [ax.get_xlabel() for ax in e._figure.axes]
    assert "true z [nm]" in labels
