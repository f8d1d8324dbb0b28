// CHT Bridge hydration, run in the same V8 sandbox as the mappings.
//
// It fills in documents the way CHT's hydrateDocs (shared-libs/lineage) does before
// `relevant_to` and `mapping` see them:
// - a report's `contact` (the submitter) and the submitter's parents;
// - a report's `patient` and `place`, from `fields.patient_id || fields.patient_uuid ||
//   patient_id` and `fields.place_id || place_id`, which are shortcodes (looked up in the
//   `medic-client/contacts_by_reference` view) or uuids; each with its parents;
// - any other document's `parent` chain;
// - on the document and every parent, `contact` (a place's primary contact) and `linked_docs`
//   replaced by the full documents. A parent that cannot be found stays `{_id}`.
//
// The documents of a batch are parsed here straight from the `_changes` response text, and the
// contacts they refer to are kept in a bounded per-run cache, so Python only moves text and ids:
// parsing, hydrating and mapping a batch never cross the Python/V8 boundary one document at a time.
'use strict';

var __chtHydration = (function () {
  var HARDCODED_TYPES = ['district_hospital', 'health_center', 'clinic', 'person'];
  var MISSING = null;
  var capacity = 50000;
  var known = new Map(); // id -> doc, or MISSING when the server said not_found / deleted
  var codes = new Map(); // shortcode or uuid ref -> uuid
  // What the current batch uses is pinned until the next batch loads, so the bounded cache can
  // never evict a document (or a shortcode) between the fetch that found it and its use.
  var pinnedDocs = new Map();
  var pinnedCodes = new Map();
  var batch = []; // the documents being hydrated
  var index = null; // the batch by id (batchIndex), made once per batch
  var subjects = []; // per document: [patientRef, placeRef] for reports, else null

  function remember(map, key, value) {
    if (map.has(key)) {
      map.delete(key);
    }
    map.set(key, value);
    if (map.size > capacity) {
      map.delete(map.keys().next().value);
    }
  }

  function isReport(doc) {
    return !!doc && doc.type === 'data_record';
  }

  function isContact(doc) {
    return !!doc && (doc.type === 'contact' || HARDCODED_TYPES.indexOf(doc.type) >= 0);
  }

  function getId(item) {
    if (typeof item === 'string') {
      return item || null;
    }
    return item && typeof item === 'object' && item._id ? item._id : null;
  }

  function usableRef(ref) {
    return (typeof ref === 'string' && ref !== '') || (typeof ref === 'number' && ref === ref && ref !== 0);
  }

  function chainIds(node) {
    var ids = [];
    for (var depth = 0; node && typeof node === 'object' && depth < 64; depth++) {
      if (node._id) {
        ids.push(node._id);
      }
      node = node.parent;
    }
    return ids;
  }

  function validLinkedDocs(doc) {
    var linked = doc.linked_docs;
    return isContact(doc) && !!linked && typeof linked === 'object' && !Array.isArray(linked);
  }

  function learn(docs) {
    docs.forEach(function (doc) {
      if (isContact(doc)) {
        remember(known, doc._id, doc);
        var code = doc.place_id || doc.patient_id;
        if (usableRef(code)) {
          remember(codes, String(code), doc._id);
        }
      }
    });
  }

  function prepare(docs) {
    batch = docs;
    index = null;
    pinnedDocs = new Map();
    pinnedCodes = new Map();
    subjects = docs.map(function (doc) {
      if (!isReport(doc)) {
        return null;
      }
      var f = doc.fields;
      return [(f && (f.patient_id || f.patient_uuid)) || doc.patient_id, (f && f.place_id) || doc.place_id];
    });
    var refs = [];
    var seen = new Set();
    subjects.forEach(function (pair) {
      (pair || []).forEach(function (ref) {
        if (!usableRef(ref) || seen.has(ref)) {
          return;
        }
        seen.add(ref);
        if (codes.has(ref)) {
          pinnedCodes.set(ref, codes.get(ref));
        } else {
          refs.push(ref);
        }
      });
    });
    return refs;
  }

  function inPlaces(doc, places) {
    var ids = chainIds(doc.contact && doc.contact.parent);
    return ids.some(function (id) { return places.indexOf(id) >= 0; });
  }

  // Load a page of documents: a `_changes` answer (`results`), or a view or `_all_docs` answer
  // with include_docs (`rows`). Design docs, `-info` docs, deleted and missing documents are
  // counted and not processed; `filter` ({forms, places, after}, for backfills) keeps only reports
  // of those forms submitted under those places, and drops the row `after` ([key, id]) where a view
  // page resumes. The answer says what to process and where to resume.
  // A server's answer, parsed; or why it cannot be used, in words that quote none of it (V8's
  // JSON.parse messages quote the text, and the text is patient data).
  function parseAnswer(text) {
    var body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      return { invalid: 'is not JSON (truncated, or not a CouchDB answer)' };
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return { invalid: 'is not a JSON object' };
    }
    var rows = body.results !== undefined ? body.results : body.rows;
    if (rows !== undefined && !Array.isArray(rows)) {
      return { invalid: 'has rows that are not a list' };
    }
    rows = rows || [];
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      if (row === null || typeof row !== 'object' || Array.isArray(row)) {
        return { invalid: 'has a row that is not an object' };
      }
      var doc = row.doc;
      if (doc !== undefined && doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) {
        return { invalid: 'has a document that is not an object' };
      }
    }
    return { body: body, rows: rows };
  }

  function loadPage(text, filterText) {
    var parsed = parseAnswer(text);
    if (parsed.invalid) {
      return JSON.stringify({ invalid: parsed.invalid });
    }
    var body = parsed.body;
    var filter = filterText ? JSON.parse(filterText) : null;
    var wanted = filter && (filter.forms || filter.places) ? filter : null;
    var rows = parsed.rows;
    var out = {
      read: rows.length, design: 0, info: 0, tombstones: 0, filtered: 0,
      ids: [], revs: [], times: [], deleted: [], missing: [], cursor: null,
      last_seq: body.last_seq === undefined ? null : body.last_seq
    };
    var docs = [];
    var after = filter && filter.after ? JSON.stringify(filter.after) : null;
    var invalid = null;
    out.rows = rows.length;
    rows.forEach(function (row) {
      var id = typeof row.id === 'string' ? row.id : '';
      var value = row.value && typeof row.value === 'object' ? row.value : {};
      if (after !== null && JSON.stringify([row.key, row.id]) === after) {
        out.read--; // the previous page's last row, where this page starts: already processed
      } else if (row.error) {
        out.missing.push(String(row.key));
      } else if (id.indexOf('_design/') === 0) {
        out.design++;
      } else if (id.slice(-5) === '-info') {
        out.info++;
      } else if (row.deleted || value.deleted || !row.doc || row.doc._deleted) {
        out.tombstones++;
        var rev = (row.changes && row.changes[0] && row.changes[0].rev) || value.rev || (row.doc && row.doc._rev);
        out.deleted.push([id, rev || null]);
      } else if (wanted && ((wanted.forms && wanted.forms.indexOf(row.doc.form) < 0) ||
                            (wanted.places && !inPlaces(row.doc, wanted.places)))) {
        out.filtered++;
      } else if (typeof row.doc._id !== 'string' || row.doc._id === '') {
        invalid = 'has a document without an _id';
      } else {
        docs.push(row.doc);
        out.ids.push(row.doc._id);
        out.revs.push(row.doc._rev === undefined ? null : row.doc._rev);
        out.times.push(typeof row.doc.reported_date === 'number' ? row.doc.reported_date : null);
      }
    });
    if (invalid) {
      return JSON.stringify({ invalid: invalid });
    }
    if (body.rows && rows.length) {
      out.cursor = [rows[rows.length - 1].key, rows[rows.length - 1].id];
    }
    learn(docs);
    out.refs = prepare(docs);
    return JSON.stringify(out);
  }

  // Load documents given directly (not from the feed), e.g. by tools and tests.
  function loadDocs(text) {
    return JSON.stringify({ refs: prepare(JSON.parse(text)) });
  }

  function learnDocs(text) {
    learn(JSON.parse(text));
  }

  // A contacts_by_reference answer for `refs`; a ref with no row is taken as a uuid. Returns why
  // the answer cannot be used, or ''.
  function resolve(responseText, refsText) {
    var parsed = parseAnswer(responseText);
    if (parsed.invalid) {
      return parsed.invalid;
    }
    var found = new Map();
    parsed.rows.forEach(function (row) {
      var key = row.key;
      if (Array.isArray(key) && key.length === 2 && !found.has(key[1])) {
        found.set(key[1], row.id);
      }
    });
    JSON.parse(refsText).forEach(function (ref) {
      var uuid = found.has(ref) ? found.get(ref) : ref;
      remember(codes, ref, uuid);
      pinnedCodes.set(ref, uuid);
    });
    return '';
  }

  function code(ref) {
    return pinnedCodes.has(ref) ? pinnedCodes.get(ref) : codes.get(ref);
  }

  function hasCode(ref) {
    return pinnedCodes.has(ref) || codes.has(ref);
  }

  // (The caches hold a document or MISSING, never undefined: one lookup says whether and what.)
  function lookup(id) {
    var doc = pinnedDocs.get(id);
    if (doc !== undefined) {
      return doc;
    }
    doc = known.get(id);
    if (doc !== undefined) {
      pinnedDocs.set(id, doc);
    }
    return doc;
  }

  // The ids hydration still needs that the cache does not hold; one `_all_docs` round each call.
  // Plain loops, no array per document: it runs over every document of every page.
  function missing() {
    var members = new Set();
    var i, k, node, depth;
    for (i = 0; i < batch.length; i++) {
      var doc = batch[i];
      if (isReport(doc)) {
        node = doc.contact;
        var contactId = getId(node);
        if (contactId) {
          members.add(contactId);
        }
        var refs = subjects[i];
        for (k = 0; k < refs.length; k++) {
          if (usableRef(refs[k]) && hasCode(refs[k])) {
            members.add(code(refs[k]));
          }
        }
      } else {
        members.add(doc._id);
        node = doc.parent;
      }
      for (depth = 0; node && typeof node === 'object' && depth < 64; depth++) { // chainIds, unrolled
        if (node._id) {
          members.add(node._id);
        }
        node = node.parent;
      }
    }
    var inBatch = batchIndex();
    var queue = Array.from(members);
    var wanted = new Set();
    while (queue.length) {
      var id = queue.pop();
      var found = inBatch.get(id);
      if (found === undefined) {
        found = lookup(id);
      }
      if (found === undefined) {
        wanted.add(id);
        continue;
      }
      if (found === MISSING) {
        continue;
      }
      for (node = found.parent, depth = 0; node && typeof node === 'object' && depth < 64; depth++) { // chainIds
        var parent = node._id;
        if (parent && !members.has(parent)) {
          members.add(parent);
          queue.push(parent);
        }
        node = node.parent;
      }
      want(getId(found.contact), inBatch, wanted); // its primary contact and linked docs
      if (validLinkedDocs(found)) {
        var tags = Object.keys(found.linked_docs);
        for (k = 0; k < tags.length; k++) {
          want(getId(found.linked_docs[tags[k]]), inBatch, wanted);
        }
      }
    }
    return JSON.stringify(Array.from(wanted).sort());
  }

  // `id` (a contact's primary contact or linked doc) added to `wanted` when neither the batch nor
  // the cache has it.
  function want(id, inBatch, wanted) {
    if (id && inBatch.get(id) === undefined && lookup(id) === undefined) {
      wanted.add(id);
    }
  }

  // Store an `_all_docs?keys=` answer; ids it does not return are remembered as missing. Returns
  // why the answer cannot be used, or ''.
  function addDocs(responseText, idsText) {
    var parsed = parseAnswer(responseText);
    if (parsed.invalid) {
      return parsed.invalid;
    }
    var got = new Set();
    parsed.rows.forEach(function (row) {
      if (row.key === undefined) {
        return;
      }
      got.add(row.key);
      var doc = row.doc && !row.error ? row.doc : MISSING;
      remember(known, row.key, doc);
      pinnedDocs.set(row.key, doc);
    });
    JSON.parse(idsText).forEach(function (id) {
      if (!got.has(id)) {
        remember(known, id, MISSING);
        pinnedDocs.set(id, MISSING);
      }
    });
    return '';
  }

  // -- building hydrated copies: every document gets its own deep copy of what it is built from,
  // as CHT's hydration deep-copies, so a snippet that changes `doc.contact.parent` changes neither
  // the cache nor the next document. A hand-written copy costs about 1 µs for a report and its
  // lineage (a JSON round trip, four times that).
  //
  // `shared` (a Map, or null for copies): for a pipeline whose snippets can neither change what
  // they are given nor tell one object from two equal ones (purity.js), the documents of one call
  // share their lineages instead: each contact or place is hydrated once per call (the Map holds
  // it by the cached document), and what hydration does not replace is the cache's own value.
  // The JSON it becomes is the same either way; only the copies are not made.

  var MAX_DEPTH = 200; // deeper than any real document; past it (a hostile one) the value is shared

  function copy(value, depth) {
    if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) {
      return value;
    }
    var i;
    if (Array.isArray(value)) {
      var list = new Array(value.length);
      for (i = 0; i < value.length; i++) {
        list[i] = copy(value[i], depth + 1);
      }
      return list;
    }
    var out = {};
    var keys = Object.keys(value);
    for (i = 0; i < keys.length; i++) {
      var key = keys[i];
      if (key === '__proto__') { // a JSON key like any other; a plain assignment would set the prototype
        Object.defineProperty(out, key, { value: copy(value[key], depth + 1), enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = copy(value[key], depth + 1);
      }
    }
    return out;
  }

  function find(id, inBatch) {
    if (!id) {
      return undefined;
    }
    var doc = inBatch ? inBatch.get(id) : undefined;
    if (doc !== undefined) {
      return doc;
    }
    doc = lookup(id);
    return doc === MISSING ? undefined : doc;
  }

  // A copy of `doc` in which the values of `contact` and `parent`, when the caller replaces them
  // (`skipContact`, `skipParent`), are not copied only to be thrown away: each keeps its place in
  // the key order, holding null until it is replaced.
  function copyBut(doc, skipContact, skipParent, shared) {
    if (!skipContact && !skipParent && !shared) {
      return copy(doc, 0);
    }
    var out = {};
    var keys = Object.keys(doc);
    for (var i = 0; i < keys.length; i++) {
      var key = keys[i];
      var value = (skipContact && key === 'contact') || (skipParent && key === 'parent') ? null
        : shared ? doc[key] : copy(doc[key], 1);
      if (key === '__proto__') {
        Object.defineProperty(out, key, { value: value, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  // `doc` copied with its primary contact and linked docs; `parentReplaced`: the caller replaces
  // its `parent` (see copyBut).
  function withContacts(doc, inBatch, parentReplaced, shared) {
    var primary = find(getId(doc.contact), inBatch);
    var out = copyBut(doc, !!primary, !!parentReplaced, shared);
    if (primary) {
      out.contact = shared ? primary : copy(primary, 0);
    }
    if (validLinkedDocs(doc)) {
      var linked = shared ? copyBut(out.linked_docs, false, false, shared) : out.linked_docs;
      Object.keys(linked).forEach(function (tag) {
        var found = find(getId(linked[tag]), inBatch);
        if (found) {
          linked[tag] = shared ? found : copy(found, 0);
        }
      });
      out.linked_docs = linked;
    }
    return out;
  }

  // `node` with its parent chain (`ids`, by default read from `node.parent`) filled in; `node` is
  // a copy made for this document already.
  function withParents(node, inBatch, ids, shared) {
    var chain = ids || chainIds(node.parent);
    var current = node;
    for (var k = 0; k < chain.length; k++) {
      var parent = find(chain[k], inBatch);
      // Each parent's own `parent` is replaced by the next one in the chain, but the last's.
      var filled = parent ? withContacts(parent, inBatch, k < chain.length - 1, shared) : { _id: chain[k] };
      current.parent = filled;
      current = filled;
    }
    return node;
  }

  // A contact or place as hydration gives it: a copy with its contacts and its parents filled in
  // (with `shared`, made once per call and document).
  function withLineage(doc, inBatch, shared) {
    var done = shared ? shared.get(doc) : undefined;
    if (done === undefined) {
      var ids = chainIds(doc.parent);
      done = withParents(withContacts(doc, inBatch, ids.length > 0, shared), inBatch, ids, shared);
      if (shared) {
        shared.set(doc, done);
      }
    }
    return done;
  }

  // `value` and everything in it frozen, so that a snippet purity.js wrongly let through can only
  // fail its own document (a TypeError in strict code, a write ignored in sloppy code) and never
  // change what the next one sees. Hydration only writes to objects it has just made, and a
  // frozen object's own values are frozen already, so each is walked once.
  function deepFreeze(value) {
    if (value === null || typeof value !== 'object' || Object.isFrozen(value)) {
      return value; // most often: a lineage another document of the call froze already
    }
    var todo = [value];
    while (todo.length) {
      var object = todo.pop();
      if (object !== null && typeof object === 'object' && !Object.isFrozen(object)) {
        Object.freeze(object);
        var keys = Object.keys(object);
        for (var k = 0; k < keys.length; k++) {
          todo.push(object[keys[k]]);
        }
      }
    }
    return value;
  }

  // Document `i` of the batch hydrated: a copy of its own (`shared`: see above; then what it
  // shares with other documents comes frozen).
  function hydrate(i, inBatch, shared) {
    var doc = batch[i];
    if (!isReport(doc)) {
      var whole = withLineage(doc, inBatch, shared);
      return shared ? deepFreeze(whole) : whole;
    }
    // The report itself is only this document's: a shallow copy will do (a report is never
    // anyone's parent or contact). What hydration adds to it is copied deeply (or shared).
    var contact = doc.contact;
    var out = Object.assign({}, doc);
    var submitter = find(getId(contact), inBatch);
    if (submitter) {
      out.contact = withLineage(submitter, inBatch, shared);
    } else if (contact && typeof contact === 'object') {
      // (an array has no parent to fill in: shared as it is)
      var own = !shared ? copy(contact, 0) : Array.isArray(contact) ? contact : copyBut(contact, false, false, shared);
      out.contact = withParents(own, inBatch, undefined, shared);
    }
    var refs = subjects[i];
    for (var k = 0; k < refs.length; k++) {
      var ref = refs[k];
      if (usableRef(ref)) {
        var found = find(hasCode(ref) ? code(ref) : ref, inBatch);
        if (found) {
          out[SUBJECTS[k]] = withLineage(found, inBatch, shared);
        }
      }
    }
    if (shared) {
      deepFreeze(out.contact);
      deepFreeze(out.patient);
      deepFreeze(out.place);
    }
    return out;
  }

  var SUBJECTS = ['patient', 'place']; // the fields a report's subjects refs fill in, in order

  // The batch by id, made once per batch: no snippet ever gets a batch document's own top level
  // (reports are copied, lineages copied or frozen), so its ids cannot change under the index.
  function batchIndex() {
    if (index === null) {
      index = new Map();
      batch.forEach(function (doc) { index.set(doc._id, doc); });
    }
    return index;
  }

  // Hydrated copies of documents [start, end) of the loaded batch, fresh for every call.
  function hydrated(start, end) {
    var inBatch = batchIndex();
    var out = [];
    var stop = end === undefined ? batch.length : Math.min(end, batch.length);
    for (var i = start || 0; i < stop; i++) {
      out.push(hydrate(i, inBatch));
    }
    return out;
  }

  function configure(cacheSize) {
    capacity = cacheSize;
  }

  return {
    configure: configure,
    loadPage: loadPage,
    loadDocs: loadDocs,
    learnDocs: learnDocs,
    resolve: resolve,
    missing: missing,
    addDocs: addDocs,
    hydrated: hydrated,
    hydrate: hydrate,
    batchIndex: batchIndex,
    hydratedJson: function () { return JSON.stringify(hydrated()); }
  };
})();
