"""Face alignment: detect five landmarks, warp onto a named template (see DEVELOPERS.md).

Public API: :func:`get_template`, :func:`list_templates`, :func:`create_detector`,
:func:`warp_face`, :func:`similarity_transform`, :func:`centre_crop`, :func:`align_image`,
:func:`align_all` (every face of a group photo), :func:`align_paths`.
"""
from slimface.align.detect import Detector, Face, create_detector, list_detectors
from slimface.align.pipeline import (AlignedBatch, AlignedFace, align_all, align_image,
                                     align_paths)
from slimface.align.templates import Template, get_template, list_templates
from slimface.align.warp import centre_crop, similarity_transform, warp_face

__all__ = ["AlignedBatch", "AlignedFace", "Detector", "Face", "Template", "align_all",
           "align_image", "align_paths", "centre_crop", "create_detector", "get_template", "list_detectors",
           "list_templates", "similarity_transform", "warp_face"]
