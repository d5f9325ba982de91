//! A ready series as the later stages see it: its instances in order and
//! the attributes routing and results need, read from the index.

use rusqlite::{Connection, Row, params};

use crate::store::IndexedAttributes;

/// One stored instance of a ready series.
#[derive(Debug, Clone)]
pub struct SeriesInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
    /// Relative to the data directory.
    pub path: String,
    /// As stored, for forwarding the instance unprocessed.
    pub transfer_syntax_uid: String,
}

/// A series whose instances have stopped arriving.
#[derive(Debug, Clone)]
pub struct ReadySeries {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// The site whose copy this is (a series is identified by site and
    /// UID), and the AE of the first instance's sender.
    pub site: String,
    pub calling_ae: String,
    /// Attributes of the first instance (lowest Instance Number): what
    /// routing matches on and what results copy (patient and study).
    pub first: IndexedAttributes,
    /// Ordered by Instance Number, then SOP Instance UID.
    pub instances: Vec<SeriesInstance>,
}

impl ReadySeries {
    pub fn instance(&self, sop_instance_uid: &str) -> Option<&SeriesInstance> {
        self.instances
            .iter()
            .find(|i| i.sop_instance_uid == sop_instance_uid)
    }
}

const COLUMNS: &str = "sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid,
    instance_number, patient_id, patient_name, patient_birth_date, patient_sex, study_date,
    study_time, accession_number, study_description, study_id, referring_physician_name,
    modality, series_number, series_description, body_part_examined, protocol_name,
    manufacturer, manufacturer_model_name, station_name, institution_name, series_date,
    series_time, rows, columns, bits_allocated, number_of_frames, site, calling_ae, path,
    transfer_syntax_uid";

fn attributes(r: &Row<'_>) -> rusqlite::Result<IndexedAttributes> {
    Ok(IndexedAttributes {
        sop_class_uid: r.get(0)?,
        sop_instance_uid: r.get(1)?,
        study_instance_uid: r.get(2)?,
        series_instance_uid: r.get(3)?,
        instance_number: r.get(4)?,
        patient_id: r.get(5)?,
        patient_name: r.get(6)?,
        patient_birth_date: r.get(7)?,
        patient_sex: r.get(8)?,
        study_date: r.get(9)?,
        study_time: r.get(10)?,
        accession_number: r.get(11)?,
        study_description: r.get(12)?,
        study_id: r.get(13)?,
        referring_physician_name: r.get(14)?,
        modality: r.get(15)?,
        series_number: r.get(16)?,
        series_description: r.get(17)?,
        body_part_examined: r.get(18)?,
        protocol_name: r.get(19)?,
        manufacturer: r.get(20)?,
        manufacturer_model_name: r.get(21)?,
        station_name: r.get(22)?,
        institution_name: r.get(23)?,
        series_date: r.get(24)?,
        series_time: r.get(25)?,
        rows: r.get(26)?,
        columns: r.get(27)?,
        bits_allocated: r.get(28)?,
        number_of_frames: r.get(29)?,
    })
}

/// Reads `site`'s copy of a series from the index; `None` when it has no
/// instances. Another site's instances of the same series UID are never
/// part of it. Results the gateway generated itself are stored in their
/// own series, so they never appear here.
pub fn load_series(
    conn: &Connection,
    site: &str,
    series_instance_uid: &str,
) -> rusqlite::Result<Option<ReadySeries>> {
    load(conn, "series_instance_uid", site, series_instance_uid)
}

/// `site`'s copy of one instance as a one-instance series: what an
/// instance-level job needs, without reading the rest of its series.
pub fn load_instance(
    conn: &Connection,
    site: &str,
    sop_instance_uid: &str,
) -> rusqlite::Result<Option<ReadySeries>> {
    load(conn, "sop_instance_uid", site, sop_instance_uid)
}

/// `column` is one of the two fixed names above, never peer input.
fn load(
    conn: &Connection,
    column: &str,
    site: &str,
    uid: &str,
) -> rusqlite::Result<Option<ReadySeries>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances WHERE {column} = ?1 AND site = ?2
         ORDER BY instance_number IS NULL, instance_number, sop_instance_uid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![uid, site])?;
    let mut series: Option<ReadySeries> = None;
    while let Some(r) = rows.next()? {
        let attrs = attributes(r)?;
        let instance = SeriesInstance {
            sop_class_uid: attrs.sop_class_uid.clone(),
            sop_instance_uid: attrs.sop_instance_uid.clone(),
            instance_number: attrs.instance_number,
            path: r.get(32)?,
            transfer_syntax_uid: r.get(33)?,
        };
        match series.as_mut() {
            Some(s) => s.instances.push(instance),
            None => {
                series = Some(ReadySeries {
                    study_instance_uid: attrs.study_instance_uid.clone(),
                    series_instance_uid: attrs.series_instance_uid.clone(),
                    site: r.get(30)?,
                    calling_ae: r.get(31)?,
                    first: attrs,
                    instances: vec![instance],
                })
            }
        }
    }
    Ok(series)
}
