"""LFW pairs parsing moved to :mod:`slimface.data.lfw`; these names stay importable here."""
from slimface.data.lfw import (IMAGE_DIR_NAMES, LFW_PAIR_FILES, VIEW1_FILES, VIEW2_FILE, Pair,
                               PairRecord, View1Split, count_by_class, find_images_root,
                               find_lfw_root, image_path, lfw_excluded_images, lfw_exclusion,
                               lfw_pair_images, lfw_pair_names, lfw_people,
                               lfw_people_not_in_pairs, load_view1, load_view2, parse_pair_records,
                               parse_pairs, unique_images)

__all__ = ["IMAGE_DIR_NAMES", "LFW_PAIR_FILES", "VIEW1_FILES", "VIEW2_FILE", "Pair", "PairRecord",
           "View1Split", "count_by_class", "find_images_root", "find_lfw_root", "image_path",
           "lfw_excluded_images", "lfw_exclusion", "lfw_pair_images", "lfw_pair_names",
           "lfw_people", "lfw_people_not_in_pairs", "load_view1", "load_view2",
           "parse_pair_records", "parse_pairs", "unique_images"]
