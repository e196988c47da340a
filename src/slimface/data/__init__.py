"""What slimface trains, calibrates and evaluates on: data roots (``roots``), LFW pairs and
the exclusion rule (``lfw``), identity folders (``identity``) and calibration sets
(``calibration``).

The exclusion rule is one function, :func:`refuse_lfw_pair_images` (with
:func:`lfw_excluded_images` for filtering): no image named by an LFW pair of view 1 or view 2
ever trains, calibrates or tunes a model.
"""
from slimface.data.calibration import (DEFAULT_CALIB_SUBDIR, calibration_crops,
                                       calibration_images, calibration_paths,
                                       default_calibration_folder)
from slimface.data.identity import IdentityFolder, scan_identity_folders
from slimface.data.lfw import (LFW_PAIR_FILES, LfwExclusion, Pair, View1Split, find_images_root,
                               find_lfw_root, lfw_exclusion, lfw_excluded_images,
                               lfw_pair_images, lfw_pair_names, lfw_people_not_in_pairs,
                               load_view1, load_view2, parse_pairs, refuse_lfw_pair_images,
                               unique_images)
from slimface.data.roots import data_candidates, data_root, find_data_root

__all__ = ["DEFAULT_CALIB_SUBDIR", "LFW_PAIR_FILES", "IdentityFolder", "LfwExclusion", "Pair",
           "View1Split", "calibration_crops", "calibration_images", "calibration_paths",
           "data_candidates", "data_root", "default_calibration_folder", "find_data_root",
           "find_images_root", "find_lfw_root", "lfw_exclusion", "lfw_excluded_images",
           "lfw_pair_images", "lfw_pair_names", "lfw_people_not_in_pairs", "load_view1",
           "load_view2", "parse_pairs", "refuse_lfw_pair_images", "scan_identity_folders",
           "unique_images"]
