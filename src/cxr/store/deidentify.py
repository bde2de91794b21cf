"""What leaves a patient's identity behind. The spool's copy keeps no names, birth dates or
private elements (`strip_demographics`); an exported instance is de-identified after the
attribute list of DICOM PS3.15's basic profile for what a chest radiograph carries: person names
and the patient module emptied, PatientID replaced by the worklist's keyed pseudonym, the
identifying study, equipment and institution attributes and every private element removed, and
the removal recorded in the header (PatientIdentityRemoved, DeidentificationMethod)."""

from __future__ import annotations

from pydicom import Dataset

from cxr.data.dicom import patient_age_years

REMOVED = (
    "AccessionNumber", "PatientAge", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator", "StudyID",
    "RequestAttributesSequence", "ReferencedPatientSequence", "IssuerOfPatientID",
    "PerformedProcedureStepID", "ScheduledProcedureStepID", "RequestedProcedureID",
)  # fmt: skip
PATIENT_GROUP = 0x0010
# PatientID (routing) and PatientAge: the age is what tells an adult film from the paediatric
# population a model was trained on, so the node warns as `cxr predict` does; no birth date is kept
KEPT_PATIENT_TAGS = {0x00100020, 0x00101010}
# free text a technologist or a modality may fill with anything, a name included (PS3.15 basic
# profile: X); no result needs it back
FREE_TEXT = {
    "ImageComments", "StudyComments", "FrameComments", "DerivationDescription", "TextComments",
    "RequestedProcedureComments", "ImagingServiceRequestComments",
    "PerformedProcedureStepDescription", "ReasonForTheRequestedProcedure",
}  # fmt: skip
OLDEST_AGE = 90  # and older: stored as 90
METHOD = "cxr export: PS3.15 basic profile subset, keyed pseudonym"  # LO: 64 at most


def deidentify(dataset: Dataset, pseudonym: str | None) -> Dataset:
    """`dataset` changed in place (and returned) so that it names no one."""
    strip_demographics(dataset)
    dataset.PatientID = pseudonym or ""
    dataset.PatientName = pseudonym or ""
    for keyword in REMOVED:
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.remove_private_tags()
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = METHOD
    return dataset


def strip_demographics(dataset: Dataset) -> Dataset:
    """Empty every person name (VR PN, at any depth), free-text comment, and the patient module
    but PatientID and age, and remove every private element (sent implicit VR, a private name is
    no PN); return the emptied top-level elements that had a value (what results must copy
    back). Emptied rather than deleted: they are type 2 attributes, present but without a value."""
    kept = Dataset()

    def blank(ds: Dataset, element) -> None:
        if element.keyword in FREE_TEXT:
            element.value = None
        elif element.VR == "PN" or (
            element.tag.group == PATIENT_GROUP
            and (ds is not dataset or int(element.tag) not in KEPT_PATIENT_TAGS)
        ):  # kept at the top level only, where an export's REMOVED list finds them
            if ds is dataset and not element.is_empty:
                kept.add_new(element.tag, element.VR, element.value)
            element.value = [] if element.VR == "SQ" else None

    dataset.walk(blank)
    dataset.remove_private_tags()  # a vendor's may hold a name or birth date under any VR
    age = patient_age_years(dataset)
    capped = f"{OLDEST_AGE:03d}Y"  # ages over 89 identify (HIPAA): 090Y, as the database
    if age is not None and age >= OLDEST_AGE and dataset.PatientAge != capped:  # stores them;
        kept.PatientAge = dataset.PatientAge  # results copy the PACS's own value back
        dataset.PatientAge = capped
    return kept
