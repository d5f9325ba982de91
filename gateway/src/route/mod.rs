//! Routing by protocol, between `assemble` and `infer`: ordered rules on
//! DICOM attributes pick the routes (models and destinations) of a series.
