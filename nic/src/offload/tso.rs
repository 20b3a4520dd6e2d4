//! # TCP segmentation offload (in progress)
