fn main() -> anyhow::Result<()> {
    let paths = devstack::Paths::discover()?;
    println!("{paths:?}");
    devstack::provision::all(&paths)
}
