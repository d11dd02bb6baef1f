//! A driver that sleeps for an hour when asked for its info: loading it must end at the time
//! limit.

use ferry_driver_sdk::{Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary};

struct SleepsInInfo;

impl Driver for SleepsInInfo {
    fn info() -> DriverInfo {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        DriverInfo { name: "sleeps-in-info".into(), version: "0.0.1".into(), image_types: vec![], reads_mapping: false }
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

ferry_driver_sdk::export_driver!(SleepsInInfo);
