fn main() {
    println!("vipctl");
}
