"""The documents every synthetic CHT ``medic`` database starts with: the ``medic-client`` design
document (views keyed as in cht.md §3.8, so hydration's shortcode lookups work), a ``settings``
document and a ``form:`` document."""

from __future__ import annotations

import base64
from typing import Any

_CONTACT_GUARD = (
    "var TYPES = ['district_hospital', 'health_center', 'clinic', 'person'];"
    " var t = doc.type === 'contact' ? doc.contact_type : doc.type;"
    " if (!(doc.type === 'contact' || TYPES.indexOf(doc.type) !== -1)) { return; }"
)

DESIGN_DOC: dict[str, Any] = {
    "_id": "_design/medic-client",
    "views": {
        "reports_by_date": {
            "map": (
                "function (doc) { if (doc.type === 'data_record' && doc.form) {"
                " emit([doc.reported_date], doc.reported_date); } }"
            )
        },
        "reports_by_form": {
            "map": (
                "function (doc) { if (doc.type === 'data_record' && doc.form) {"
                " emit([doc.form], doc.reported_date); } }"
            ),
            "reduce": "_count",
        },
        "reports_by_subject": {
            "map": (
                "function (doc) { if (doc.type !== 'data_record' || !doc.form) { return; }"
                " var f = doc.fields || {}; var seen = {};"
                " [doc.patient_id, doc.place_id, doc.case_id, f.patient_id, f.place_id, f.case_id,"
                " f.patient_uuid, f.place_uuid].forEach(function (s) {"
                " if (s && !seen[s]) { seen[s] = true; emit(String(s), doc.reported_date); } }); }"
            )
        },
        "contacts_by_type": {
            "map": (
                "function (doc) { " + _CONTACT_GUARD + " var idx = TYPES.indexOf(t);"
                " emit([t], (doc.date_of_death ? 'true' : 'false') + ' ' + (doc.muted ? 'true' : 'false')"
                " + ' ' + (idx === -1 ? t : idx) + ' ' + (doc.name || '').toLowerCase()); }"
            ),
            "reduce": "_count",
        },
        "contacts_by_parent": {
            "map": (
                "function (doc) { "
                + _CONTACT_GUARD
                + " if (doc.parent && doc.parent._id) { emit([doc.parent._id, t], null); } }"
            )
        },
        "contacts_by_place": {
            "map": (
                "function (doc) { "
                + _CONTACT_GUARD
                + " var p = doc.parent; while (p && p._id) { emit([p._id], doc.name); p = p.parent; } }"
            )
        },
        "contacts_by_phone": {
            "map": ("function (doc) { " + _CONTACT_GUARD + " if (doc.phone) { emit(doc.phone, null); } }")
        },
        "contacts_by_reference": {
            "map": (
                "function (doc) { " + _CONTACT_GUARD + " var code = doc.place_id || doc.patient_id;"
                " if (code) { emit(['shortcode', String(code)], doc.reported_date); }"
                " if (doc.rc_code) {"
                " emit(['external', String(doc.rc_code).toUpperCase()], doc.reported_date); } }"
            )
        },
        "data_records_by_type": {
            "map": ("function (doc) { if (doc.type === 'data_record') { emit(doc.form ? 'report' : 'message'); } }"),
            "reduce": "_count",
        },
    },
}

# Roles as CHT defines them in app_settings.roles: a role without ``offline: true`` is online
# (cht.md §2.1), so the integration user's role is explicitly online and the CHW's offline.
_ROLES: dict[str, Any] = {
    "integration": {"name": "usertype.integration", "offline": False},
    "chw": {"name": "usertype.chw", "offline": True},
    "chw_supervisor": {"name": "usertype.chw-supervisor", "offline": False},
}

# Permission -> roles. ``integration`` gets what cht.md §2.7 recommends, plus contact creation.
_PERMISSIONS: dict[str, list[str]] = {
    "can_create_records": ["chw", "chw_supervisor", "integration"],
    "can_view_contacts": ["chw", "chw_supervisor", "integration"],
    "can_view_reports": ["chw", "chw_supervisor", "integration"],
    "can_edit": ["chw", "chw_supervisor", "integration"],
    "can_create_people": ["chw", "chw_supervisor", "integration"],
    "can_create_places": ["chw", "chw_supervisor", "integration"],
    "can_update_people": ["chw", "chw_supervisor", "integration"],
    "can_update_places": ["chw", "chw_supervisor", "integration"],
}

# CHT's standard hard-coded hierarchy, expressed as configurable contact types.
_CONTACT_TYPES: list[dict[str, Any]] = [
    {
        "id": "district_hospital",
        "name_key": "contact.type.district_hospital",
        "group_key": "contact.type.district_hospital.plural",
        "create_key": "contact.type.district_hospital.new",
        "edit_key": "contact.type.place.edit",
        "icon": "medic-district-hospital",
        "create_form": "form:contact:district_hospital:create",
        "edit_form": "form:contact:district_hospital:edit",
        "parents": [],
    },
    {
        "id": "health_center",
        "name_key": "contact.type.health_center",
        "group_key": "contact.type.health_center.plural",
        "create_key": "contact.type.health_center.new",
        "edit_key": "contact.type.place.edit",
        "icon": "medic-health-center",
        "create_form": "form:contact:health_center:create",
        "edit_form": "form:contact:health_center:edit",
        "parents": ["district_hospital"],
    },
    {
        "id": "clinic",
        "name_key": "contact.type.clinic",
        "group_key": "contact.type.clinic.plural",
        "create_key": "contact.type.clinic.new",
        "edit_key": "contact.type.place.edit",
        "icon": "medic-clinic",
        "create_form": "form:contact:clinic:create",
        "edit_form": "form:contact:clinic:edit",
        "parents": ["health_center"],
        "count_visits": True,
    },
    {
        "id": "person",
        "name_key": "contact.type.person",
        "group_key": "contact.type.person.plural",
        "create_key": "contact.type.person.new",
        "edit_key": "contact.type.person.edit",
        "icon": "medic-person",
        "create_form": "form:contact:person:create",
        "edit_form": "form:contact:person:edit",
        "primary_contact_key": "clinic.field.contact",
        "parents": ["district_hospital", "health_center", "clinic"],
        "person": True,
    },
]


def _field(kind: str, label: str, required: bool = False) -> dict[str, Any]:
    return {"type": kind, "required": required, "labels": {"short": {"en": label}, "tiny": {"en": label}}}


# Task-generating JSON forms the integration posts to /api/v2/records (cht.md §4.1). The CHW's
# tasks for them are in include/cht_config/tasks.js. ``source_ref`` holds the integration's own
# idempotency reference (the records API has none).
_FORMS: dict[str, Any] = {
    "LTFU_FOLLOWUP": {
        "meta": {"code": "LTFU_FOLLOWUP", "icon": "icon-follow-up", "translation_key": "form.ltfu_followup.title"},
        "fields": {
            "patient_uuid": _field("string", "patient_uuid", required=True),
            "patient_id": _field("string", "patient_id"),
            "external_id": _field("string", "external_id"),
            "source_ref": _field("string", "source_ref"),
            "reason": _field("string", "reason"),
            "last_visit_date": _field("date", "last_visit_date"),
            "missed_appointment_date": _field("date", "missed_appointment_date"),
            "facility": _field("string", "facility"),
            "program": _field("string", "program"),
        },
        "public_form": True,
    },
    "CONTACT_TRACE": {
        "meta": {"code": "CONTACT_TRACE", "icon": "icon-people-family", "translation_key": "form.contact_trace.title"},
        "fields": {
            "patient_uuid": _field("string", "patient_uuid", required=True),
            "patient_id": _field("string", "patient_id"),
            "external_id": _field("string", "external_id"),
            "source_ref": _field("string", "source_ref"),
            "index_case_id": _field("string", "index_case_id"),
            "exposure_date": _field("date", "exposure_date"),
            "contact_type": _field("string", "contact_type"),
            "condition": _field("string", "condition"),
            "facility": _field("string", "facility"),
        },
        "public_form": True,
    },
    # A community member's self-screening conversation in RapidPro (reverse/sources/rapidpro.py).
    "SELF_SCREENING": {
        "meta": {"code": "SELF_SCREENING", "icon": "icon-follow-up", "translation_key": "form.self_screening.title"},
        "fields": {
            "patient_uuid": _field("string", "patient_uuid", required=True),
            "external_id": _field("string", "external_id"),
            "source_ref": _field("string", "source_ref"),
            "symptoms": _field("string", "symptoms"),
            "fever": _field("string", "fever"),
            "cough": _field("string", "cough"),
            "flow": _field("string", "flow"),
            "screened_at": _field("string", "screened_at"),
        },
        "public_form": True,
    },
}

SETTINGS_DOC: dict[str, Any] = {
    "_id": "settings",
    "settings": {
        "locale": "en",
        "locale_outgoing": "en",
        "default_country_code": 254,
        "date_format": "DD-MMM-YYYY",
        "reported_date_format": "DD-MMM-YYYY HH:mm:ss",
        "transitions": {"generate_shortcode_on_contacts": True, "generate_patient_id_on_people": True},
        "outbound": {},
        # Added for the local CHT API (standins/cht_api.py); see include/cht_config/README.md.
        "roles": _ROLES,
        "permissions": _PERMISSIONS,
        "contact_types": _CONTACT_TYPES,
        "forms": _FORMS,
    },
}

_XFORM = (
    '<?xml version="1.0"?><h:html xmlns="http://www.w3.org/2002/xforms"'
    ' xmlns:h="http://www.w3.org/1999/xhtml"><h:head><h:title>Pregnancy registration</h:title>'
    '<model><instance><pregnancy id="pregnancy"><patient_id/><patient_uuid/><lmp_date/><edd/>'
    "<anc_visits/><meta><instanceID/></meta></pregnancy></instance></model></h:head>"
    "<h:body/></h:html>"
)
FORM_DOC: dict[str, Any] = {
    "_id": "form:pregnancy",
    "type": "form",
    "internalId": "pregnancy",
    "title": [{"locale": "en", "content": "Pregnancy registration"}],
    "icon": "icon-pregnancy",
    "context": {"person": True, "place": False},
    "_attachments": {"xml": {"content_type": "application/xml", "data": base64.b64encode(_XFORM.encode()).decode()}},
}
