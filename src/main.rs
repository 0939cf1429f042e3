fn main() {
    println!("vipd");
}
