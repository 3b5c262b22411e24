import numpy as np
import pytest

from napari_smlm.core.evaluation.crlb import crlb_lateral_nm


def test_mortensen_bound_values():
    # No background, no excess noise: var = σa²/N · 16/9 (Mortensen 2010, eq. 6)
    sa2 = 130.0**2 + 100.0**2 / 12
    assert crlb_lateral_nm(1000, 0, 130.0, 100.0, excess_noise=1.0) == pytest.approx(np.sqrt(sa2 / 1000 * 16 / 9))
    # EMCCD doubles the variance; background and fewer photons make it worse.
    a = crlb_lateral_nm(1000, 50, 130.0, 100.0, 2.0)
    assert a == pytest.approx(np.sqrt(2) * crlb_lateral_nm(1000, 50, 130.0, 100.0, 1.0))
    assert crlb_lateral_nm(500, 50, 130.0, 100.0) > a > crlb_lateral_nm(1000, 10, 130.0, 100.0)
    assert 5 < crlb_lateral_nm(3000, 50, 130.0, 100.0) < 6.5  # ~5.5 nm, as usually quoted for such data
