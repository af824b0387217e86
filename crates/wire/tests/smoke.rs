use eddy_wire::*;

#[test]
fn put_records_json_decodes_and_validates() {
    let svc = kinesis();
    let op = svc.operation("PutRecords").unwrap();
    let body = br#"{"StreamName":"s","Records":[{"Data":"aGVsbG8=","PartitionKey":"k"}]}"#;
    let v = svc.decode(op, Protocol::Json, body).unwrap();
    svc.validate(op, &v).unwrap();
    let recs = v.list("Records").unwrap();
    assert_eq!(recs[0].blob("Data").unwrap().as_ref(), b"hello");
}
