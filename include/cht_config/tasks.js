/*
 * CHT tasks for the reports the integration creates with POST /api/v2/records
 * (JSON forms LTFU_FOLLOWUP and CONTACT_TRACE in app_settings.forms; see README.md here).
 *
 * Runs on the CHW's device (the rules engine), not on the server. A task appears on the patient
 * the report is about (fields.patient_uuid / patient_id) and in the Tasks tab of the offline
 * users whose area contains that patient.
 *
 * The action forms (`ltfu_followup_visit`, `contact_trace_visit`) are app xforms the CHW fills;
 * they must be uploaded to the CHT instance (cht-conf upload-app-forms). Each carries the
 * integration's reference forward in `inputs.source_ref` through modifyContent, so the
 * completion report can be matched back to the external record (e.g. by an outbound push).
 *
 * `Utils` is provided by the rules engine: isFormSubmittedInWindow(reports, form, start, end)
 * and addDate(date, days).
 */

// The completion form was submitted for this contact after the integration's report arrived
// and before the event window closed.
const completedAfter = (completionForm) => (contact, report, event, dueDate) => {
  const start = report.reported_date + 1;
  const end = Utils.addDate(dueDate, event.end + 1).getTime();
  return Utils.isFormSubmittedInWindow(contact.reports, completionForm, start, end);
};

// Pass the external references into the xform's inputs group.
const passReferences = (content, contact, report) => {
  const fields = (report && report.fields) || {};
  content.source_ref = fields.source_ref;
  content.external_id = fields.external_id;
};

module.exports = [
  {
    name: 'ltfu-followup',
    icon: 'icon-follow-up',
    title: 'task.ltfu_followup.title',
    appliesTo: 'reports',
    // Must equal doc.form exactly: JSON-form records are stored upper-case.
    appliesToType: ['LTFU_FOLLOWUP'],
    // Only reports that found their patient (no sys.missing_fields on patient_uuid).
    appliesIf: (contact, report) => !!(report.fields && report.fields.patient_uuid),
    actions: [
      {
        type: 'report',
        form: 'ltfu_followup_visit',
        label: 'task.ltfu_followup.action',
        modifyContent: passReferences,
      },
    ],
    // Due 3 days after the report arrives, visible from arrival, overdue after 14 days.
    events: [{ id: 'ltfu-followup-visit', days: 3, start: 3, end: 14 }],
    resolvedIf: completedAfter('ltfu_followup_visit'),
    priority: { level: 'high', label: 'task.ltfu_followup.priority' },
  },
  {
    name: 'contact-trace',
    icon: 'icon-people-family',
    title: 'task.contact_trace.title',
    appliesTo: 'reports',
    appliesToType: ['CONTACT_TRACE'],
    appliesIf: (contact, report) => !!(report.fields && report.fields.patient_uuid),
    actions: [
      {
        type: 'report',
        form: 'contact_trace_visit',
        label: 'task.contact_trace.action',
        modifyContent: (content, contact, report) => {
          passReferences(content, contact, report);
          content.index_case_id = report.fields.index_case_id;
        },
      },
    ],
    // Trace quickly: due the day after the report arrives, visible at once, overdue after 7 days.
    events: [{ id: 'contact-trace-visit', days: 1, start: 1, end: 7 }],
    resolvedIf: completedAfter('contact_trace_visit'),
    priority: { level: 'high', label: 'task.contact_trace.priority' },
  },
  {
    // A community member's RapidPro self-screening reported symptoms: the CHW visits them.
    name: 'self-screening-follow-up',
    icon: 'icon-follow-up',
    title: 'task.self_screening.title',
    appliesTo: 'reports',
    appliesToType: ['SELF_SCREENING'],
    appliesIf: (contact, report) =>
      !!(report.fields && report.fields.patient_uuid) && report.fields.symptoms === 'yes',
    actions: [
      {
        type: 'report',
        form: 'self_screening_visit',
        label: 'task.self_screening.action',
        modifyContent: passReferences,
      },
    ],
    events: [{ id: 'self-screening-visit', days: 1, start: 1, end: 3 }],
    resolvedIf: completedAfter('self_screening_visit'),
    priority: { level: 'high', label: 'task.self_screening.priority' },
  },
];
