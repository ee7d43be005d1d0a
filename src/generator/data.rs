//! Static vocabularies for the hospital documents: facilities of an Indian hospital group, names,
//! departments, ICD-10 codes, lab tests, billing codes and drugs. Plain `&'static` tables so that
//! building a document only copies short strings.

/// A facility of the group: id, city, state, the first three digits of its PIN codes, localities.
pub(crate) struct Facility {
    pub id: &'static str,
    pub city: &'static str,
    pub state: &'static str,
    pub pin_prefix: u32,
    pub localities: &'static [&'static str],
}

pub(crate) const FACILITIES: [Facility; 6] = [
    Facility {
        id: "BLR01",
        city: "Bengaluru",
        state: "Karnataka",
        pin_prefix: 560,
        localities: &["Indiranagar", "Jayanagar 4th Block", "Whitefield", "Koramangala", "Malleshwaram", "HSR Layout"],
    },
    Facility {
        id: "DEL02",
        city: "New Delhi",
        state: "Delhi",
        pin_prefix: 110,
        localities: &["Lajpat Nagar", "Dwarka Sector 10", "Rohini", "Saket", "Karol Bagh"],
    },
    Facility {
        id: "MUM03",
        city: "Mumbai",
        state: "Maharashtra",
        pin_prefix: 400,
        localities: &["Andheri (E)", "Dadar West", "Bandra", "Chembur", "Borivali"],
    },
    Facility {
        id: "CHN04",
        city: "Chennai",
        state: "Tamil Nadu",
        pin_prefix: 600,
        localities: &["T. Nagar", "Adyar", "Anna Nagar", "Velachery", "Mylapore"],
    },
    Facility {
        id: "HYD05",
        city: "Hyderabad",
        state: "Telangana",
        pin_prefix: 500,
        localities: &["Banjara Hills", "Kukatpally", "Gachibowli", "Secunderabad"],
    },
    Facility {
        id: "KOL06",
        city: "Kolkata",
        state: "West Bengal",
        pin_prefix: 700,
        localities: &["Salt Lake", "Ballygunge", "Howrah", "Behala"],
    },
];

/// Relative volume of each facility in [`FACILITIES`] (the flagship in Bengaluru is the busiest).
pub(crate) const FACILITY_WEIGHTS: [u32; 6] = [30, 20, 20, 15, 10, 5];

/// Patients from out of town: (city, state, PIN prefix).
pub(crate) const OTHER_CITIES: [(&str, &str, u32); 6] = [
    ("Mysuru", "Karnataka", 570),
    ("Pune", "Maharashtra", 411),
    ("Coimbatore", "Tamil Nadu", 641),
    ("Noida", "Uttar Pradesh", 201),
    ("Warangal", "Telangana", 506),
    ("Patna", "Bihar", 800),
];

pub(crate) const STREETS: [&str; 8] = [
    "MG Road",
    "4th Cross",
    "Gandhi Street",
    "Station Road",
    "Nehru Nagar Main Rd",
    "12th Main",
    "Temple Street",
    "Link Road",
];

pub(crate) const FIRST_NAMES: [&str; 48] = [
    "Aarav",
    "Vivaan",
    "Aditya",
    "Vihaan",
    "Arjun",
    "Sai",
    "Reyansh",
    "Krishna",
    "Ishaan",
    "Rohan",
    "Rahul",
    "Amit",
    "Suresh",
    "Ramesh",
    "Venkatesh",
    "Karthik",
    "Priya",
    "Ananya",
    "Diya",
    "Aadhya",
    "Saanvi",
    "Lakshmi",
    "Meera",
    "Kavya",
    "Sneha",
    "Pooja",
    "Deepika",
    "Fatima",
    "Mohammed",
    "Imran",
    "Ayesha",
    "Gurpreet",
    "Harpreet",
    "Joseph",
    "Mary",
    "Thomas",
    "Sunita",
    "Anjali",
    "Divya",
    "Nikhil",
    "Manoj",
    "Sanjay",
    "Rajesh",
    "Murugan",
    "Selvi",
    "Bhavana",
    "Shreya",
    "Zoya",
];

pub(crate) const LAST_NAMES: [&str; 44] = [
    "Sharma",
    "Verma",
    "Gupta",
    "Singh",
    "Kumar",
    "Patel",
    "Shah",
    "Reddy",
    "Rao",
    "Naidu",
    "Iyer",
    "Iyengar",
    "Nair",
    "Menon",
    "Pillai",
    "Krishnan",
    "Subramanian",
    "Banerjee",
    "Chatterjee",
    "Mukherjee",
    "Das",
    "Bose",
    "Ghosh",
    "Khan",
    "Sheikh",
    "Qureshi",
    "Joshi",
    "Kulkarni",
    "Deshpande",
    "Patil",
    "Jadhav",
    "Gowda",
    "Hegde",
    "Shetty",
    "D'Souza",
    "Fernandes",
    "Mehta",
    "Agarwal",
    "Bansal",
    "Malhotra",
    "Kapoor",
    "Chopra",
    "Gill",
    "Sandhu",
];

pub(crate) const GENDERS: [&str; 6] = ["M", "F", "M", "F", "Male", "female"];

pub(crate) const ALLERGENS: [&str; 10] = [
    "Penicillin",
    "Sulfa drugs",
    "Aspirin",
    "Peanuts",
    "Shellfish",
    "Latex",
    "Dust mites",
    "Ibuprofen",
    "Egg",
    "Contrast dye",
];
pub(crate) const SEVERITIES: [&str; 3] = ["mild", "moderate", "severe"];

pub(crate) const TAGS: [&str; 9] =
    ["diabetic", "hypertensive", "vip", "staff", "senior-citizen", "pregnant", "dialysis", "corporate", "cghs"];

pub(crate) const INSURERS: [&str; 7] =
    ["Star Health", "HDFC ERGO", "ICICI Lombard", "New India Assurance", "Niva Bupa", "CGHS", "Ayushman Bharat PM-JAY"];

pub(crate) const DEPARTMENTS: [&str; 12] = [
    "General Medicine",
    "Cardiology",
    "Orthopaedics",
    "Paediatrics",
    "Obstetrics & Gynaecology",
    "Nephrology",
    "Neurology",
    "Pulmonology",
    "Emergency Medicine",
    "ENT",
    "Dermatology",
    "Oncology",
];

pub(crate) const ICD10: [(&str, &str); 17] = [
    ("A09", "Infectious gastroenteritis and colitis, unspecified"),
    ("A90", "Dengue fever [classical dengue]"),
    ("B50.9", "Plasmodium falciparum malaria, unspecified"),
    ("A01.0", "Typhoid fever"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("K35.80", "Unspecified acute appendicitis"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("O80", "Encounter for full-term uncomplicated delivery"),
    ("R50.9", "Fever, unspecified"),
    ("S52.5", "Fracture of lower end of radius"),
    ("E78.5", "Hyperlipidaemia, unspecified"),
    ("I21.9", "Acute myocardial infarction, unspecified"),
    ("N18.3", "Chronic kidney disease, stage 3"),
    ("U07.1", "COVID-19"),
];

/// Free-text clinical notes, several deliberately non-ASCII (Devanagari, Tamil, Kannada, emoji).
pub(crate) const NOTES: [&str; 14] = [
    "Pt c/o fever x 3 days, body ache. Adv CBC, NS1.",
    "ज्वर और सिरदर्द, 3 दिन से",
    "காய்ச்சல் - review after 2 days",
    "ದೀರ್ಘ ಕೆಮ್ಮು (chronic cough), adv chest X-ray",
    "Follow-up in 1 week 👍",
    "BP controlled on amlodipine 5 mg OD",
    "Referred to cardiology 🫀 for TMT",
    "NBM after midnight. Consent taken.",
    "",
    "Patient anxious 😟; counselled, relatives informed",
    "Dressing done. Suture removal on day 10.",
    "मधुमेह नियंत्रण में नहीं - insulin started",
    "Known case of CKD-3, on conservative mgmt",
    "Discharged against medical advice (DAMA)",
];

/// Lab tests: code, unit, reference low/high, plausible value range (low, high), qualitative?
pub(crate) struct LabTest {
    pub code: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub low: f64,
    pub high: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) const LAB_TESTS: [LabTest; 10] = [
    LabTest { code: "HB", name: "Haemoglobin", unit: "g/dL", low: 12.0, high: 16.0, min: 6.5, max: 18.5 },
    LabTest { code: "GLU-F", name: "Glucose, fasting", unit: "mg/dL", low: 70.0, high: 100.0, min: 55.0, max: 320.0 },
    LabTest { code: "HBA1C", name: "HbA1c", unit: "%", low: 4.0, high: 5.6, min: 4.2, max: 12.5 },
    LabTest {
        code: "TSH",
        name: "Thyroid stimulating hormone",
        unit: "µIU/mL",
        low: 0.4,
        high: 4.0,
        min: 0.05,
        max: 12.0,
    },
    LabTest { code: "CREAT", name: "Creatinine", unit: "mg/dL", low: 0.6, high: 1.2, min: 0.4, max: 6.5 },
    LabTest { code: "NA", name: "Sodium", unit: "mmol/L", low: 135.0, high: 145.0, min: 122.0, max: 152.0 },
    LabTest { code: "K", name: "Potassium", unit: "mmol/L", low: 3.5, high: 5.1, min: 2.8, max: 6.4 },
    LabTest { code: "CRP", name: "C-reactive protein", unit: "mg/L", low: 0.0, high: 5.0, min: 0.5, max: 180.0 },
    LabTest { code: "PLT", name: "Platelet count", unit: "10^3/µL", low: 150.0, high: 450.0, min: 18.0, max: 520.0 },
    LabTest { code: "WBC", name: "Total leucocyte count", unit: "10^3/µL", low: 4.0, high: 11.0, min: 1.8, max: 24.0 },
];

/// Qualitative tests: code, name, possible results.
pub(crate) const QUALITATIVE_TESTS: [(&str, &str, [&str; 2]); 3] = [
    ("DENGUE-NS1", "Dengue NS1 antigen", ["positive", "negative"]),
    ("HBSAG", "Hepatitis B surface antigen", ["reactive", "non-reactive"]),
    ("COVID-RTPCR", "SARS-CoV-2 RT-PCR", ["detected", "not detected"]),
];

/// Bill line items: code, base price in paise.
pub(crate) const BILL_ITEMS: [(&str, i64); 11] = [
    ("CONS-OPD", 80_000),
    ("CONS-FOLLOWUP", 40_000),
    ("LAB-CBC", 35_000),
    ("LAB-LFT", 80_000),
    ("RAD-XR-CHEST", 45_000),
    ("RAD-CT-HEAD", 350_000),
    ("PHARM", 12_500),
    ("ROOM-GENERAL", 250_000),
    ("ROOM-ICU", 1_200_000),
    ("PROC-ECG", 30_000),
    ("PROC-DRESSING", 25_000),
];

pub(crate) const PAYMENT_MODES: [&str; 5] = ["UPI", "CASH", "CARD", "INSURANCE", "NEFT"];

/// Drugs: SKU, name, MRP in paise.
pub(crate) const DRUGS: [(&str, &str, i64); 16] = [
    ("PCM500", "Paracetamol 500mg Tab", 150),
    ("DOLO650", "Dolo 650 Tab", 210),
    ("AMOX500", "Amoxicillin 500mg Cap", 890),
    ("AZI500", "Azithromycin 500mg Tab", 2_350),
    ("MET500", "Metformin 500mg Tab", 320),
    ("AML5", "Amlodipine 5mg Tab", 280),
    ("ATOR10", "Atorvastatin 10mg Tab", 1_120),
    ("PAN40", "Pantoprazole 40mg Tab", 940),
    ("OND4INJ", "Ondansetron 4mg/2mL Inj", 1_850),
    ("CEF1G", "Ceftriaxone 1g Inj", 6_400),
    ("GLAR100", "Insulin Glargine 100IU/mL 3mL", 74_500),
    ("ORS", "ORS Sachet 21.8g", 2_100),
    ("CTZ10", "Cetirizine 10mg Tab", 190),
    ("SALB100", "Salbutamol Inhaler 100mcg 200MD", 15_800),
    ("NS500", "Normal Saline 0.9% 500mL", 3_050),
    ("VITD60K", "Cholecalciferol 60000IU Cap", 3_600),
];

pub(crate) const SUPPLIERS: [&str; 4] = ["Medplus Distributors", "Apollo Pharmacy Supply", "Sun Pharma", "Cipla Ltd"];

/// Search patterns some pharmacists saved on stock items (stored as BSON regular expressions).
pub(crate) const PATTERNS: [(&str, &str); 3] = [("^PARA", "i"), ("(?:500|650)mg$", ""), ("inj(ection)?", "i")];
