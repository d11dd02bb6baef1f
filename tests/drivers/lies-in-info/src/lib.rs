//! A driver whose info says too much, with escape codes: loading it must refuse what it says
//! rather than write it into bundle.json or print it.

use ferry_driver_sdk::{Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary};

struct LiesInInfo;

impl Driver for LiesInInfo {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "oci\x1b[2K\rbundle driver oci handles nothing".into(),
            version: "1".repeat(1 << 20),
            image_types: (0..100_000).map(|i| format!("type-{i}")).collect(),
            reads_mapping: false,
        }
    }

    fn fetch(_: Image, _: &Source, _: &Store) -> Result<Descriptor> {
        Err(Error::unsupported("only info"))
    }

    fn verify(_: Image, _: &Source) -> Result<()> {
        Err(Error::unsupported("only info"))
    }

    fn relocate(_: Image, _: &Source, _: &Destination, _: Vec<(String, String)>) -> Result<String> {
        Err(Error::unsupported("only info"))
    }

    fn inspect(_: Image, _: &Source) -> Result<Summary> {
        Err(Error::unsupported("only info"))
    }
}

ferry_driver_sdk::export_driver!(LiesInInfo);
