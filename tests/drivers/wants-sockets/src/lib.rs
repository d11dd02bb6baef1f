//! A driver that wants the network: its `relocate` opens a TCP connection, so the component
//! imports `wasi:sockets`, which ferry refuses to link.

use ferry_driver_sdk::{
    Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary, export_driver,
};

struct WantsSockets;

impl Driver for WantsSockets {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "wants-sockets".into(),
            version: "0.0.1".into(),
            image_types: vec!["net".into()],
            reads_mapping: false,
        }
    }
    fn fetch(_: Image, _: &Source, _: &Store) -> Result<Descriptor> {
        Err(Error::unsupported("no"))
    }
    fn verify(_: Image, _: &Source) -> Result<()> {
        Ok(())
    }
    fn relocate(image: Image, _: &Source, _: &Destination, _mapping: Vec<(String, String)>) -> Result<String> {
        std::net::TcpStream::connect(image.reference.as_str()).map_err(Error::failed)?;
        Ok("connected".into())
    }
    fn inspect(_: Image, _: &Source) -> Result<Summary> {
        Err(Error::unsupported("no"))
    }
}

export_driver!(WantsSockets);
