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
